// Reads a JSON array of LogQL strings on stdin; prints a JSON array of
// {query, errors: [{from, to, text}]} — an empty errors list means the query parsed.
// Lezer never throws on bad input: it inserts error nodes, so we walk the tree and count them.
import { parser } from "@grafana/lezer-logql";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const queries = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const results = queries.map((query) => {
  const errors = [];
  const tree = parser.parse(query);
  tree.iterate({
    enter(node) {
      if (node.type.isError) {
        errors.push({ from: node.from, to: node.to, text: query.slice(node.from, node.to) });
      }
    },
  });
  const top = tree.topNode.firstChild;
  if (!top) errors.push({ from: 0, to: query.length, text: "empty query" });
  return { query, errors };
});
process.stdout.write(JSON.stringify(results));

// Reads a JSON array of Kubernetes objects on stdin; prints a JSON array of
// {apiVersion, kind, name, errors: [message]}: an empty errors list means the object is valid.
// Any monitoring.coreos.com kind the models know is checked with its model's validate(), which
// applies the Prometheus Operator's schemas (types, required fields, enums, patterns).
const GROUP = "monitoring.coreos.com";

async function modelFor(apiVersion, kind) {
  const [group, version] = String(apiVersion).split("/");
  if (group !== GROUP || !/^v\w+$/.test(version ?? "")) {
    throw new Error(`not a ${GROUP} object: ${apiVersion}`);
  }
  if (!/^[A-Z]\w*$/.test(String(kind))) throw new Error(`not a kind: ${kind}`);
  const path = `@kubernetes-models/prometheus-operator/${GROUP}/${version}/${kind}`;
  let module;
  try {
    module = await import(path);
  } catch (error) {
    throw new Error(`no model for ${apiVersion} ${kind} (${error.code ?? error.message})`);
  }
  if (typeof module[kind] !== "function") throw new Error(`no model class ${kind} in ${path}`);
  return module[kind];
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const results = [];
for (const object of objects) {
  const errors = [];
  try {
    const Model = await modelFor(object.apiVersion, object.kind);
    new Model(object).validate();
  } catch (error) {
    errors.push(error.message);
  }
  results.push({
    apiVersion: object.apiVersion,
    kind: object.kind,
    name: object.metadata?.name ?? null,
    errors,
  });
}
process.stdout.write(JSON.stringify(results));

"""Small apps that tests serve with a real uvicorn (`module:app`)."""

"""HTTP in and out: the app factory, blueprints, schemas, auth, errors and the CLI."""

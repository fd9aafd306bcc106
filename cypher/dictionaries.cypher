// Every completely loaded dictionary.
// Parameters: none. Returns: id, kind, model, n_layers, n_features, inputs_key, run.
MATCH (d:Dictionary)
RETURN d.id AS id, d.kind AS kind, d.model AS model, d.n_layers AS n_layers,
       d.n_features AS n_features, d.inputs_key AS inputs_key, d.run AS run
ORDER BY id

// Write the Dictionary node; written last by a load, so it marks the load complete.
// Parameters: $id, $kind, $model, $n_layers, $n_features, $read_site, $write_site, $run, $inputs_key.
MERGE (d:Dictionary {id: $id})
SET d.kind = $kind, d.model = $model, d.n_layers = $n_layers, d.n_features = $n_features,
    d.read_site = $read_site, d.write_site = $write_site, d.run = $run, d.inputs_key = $inputs_key

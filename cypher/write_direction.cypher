// Write (or overwrite) a Direction node (`graphkit direction add`).
// Parameters: $id, and every Direction property (schema.NODES["Direction"]).
MERGE (d:Direction {id: $id})
SET d.dictionary = $dictionary, d.name = $name, d.layer = $layer, d.bias = $bias, d.read_site = $read_site,
    d.vector = $vector,
    d.read_vector = $read_vector, d.count = $count, d.density = $density, d.mean = $mean, d.max = $max,
    d.top_tokens = $top_tokens, d.bottom_tokens = $bottom_tokens
RETURN d.id AS id

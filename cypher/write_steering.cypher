// Write one steering result and link it to its prompt.
// Parameters: $id, $prompt (prompt id), and every Steering property (schema.NODES["Steering"]).
MERGE (s:Steering {id: $id})
SET s.mode = $mode, s.value = $value, s.positions = $positions, s.baseline = $baseline,
    s.steered = $steered, s.baseline_answer = $baseline_answer, s.steered_answer = $steered_answer,
    s.changed = $changed, s.answer_token = $answer_token, s.logit_before = $logit_before,
    s.logit_after = $logit_after, s.prob_before = $prob_before, s.prob_after = $prob_after,
    s.on_generated = $on_generated, s.max_new_tokens = $max_new_tokens
WITH s
MATCH (p:Prompt {id: $prompt})
MERGE (s)-[:ON_PROMPT]->(p)

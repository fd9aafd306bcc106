// Steering results recorded for a direction.
// Parameters: $id (direction id). Returns: prompt, mode, value, positions, on_generated,
//   max_new_tokens, baseline_answer, steered_answer, changed, answer_token, prob_before, prob_after.
MATCH (d:Direction {id: $id})-[:DIRECTION_STEERED]->(s:Steering)-[:ON_PROMPT]->(p:Prompt)
RETURN p.text AS prompt, s.mode AS mode, s.value AS value, s.positions AS positions,
       s.on_generated AS on_generated, s.max_new_tokens AS max_new_tokens,
       s.baseline_answer AS baseline_answer, s.steered_answer AS steered_answer, s.changed AS changed,
       s.answer_token AS answer_token, s.prob_before AS prob_before, s.prob_after AS prob_after
ORDER BY prompt, mode, value, positions, on_generated, max_new_tokens

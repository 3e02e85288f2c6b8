"""Using a model: completion with stop rules and streaming, served over standard APIs."""

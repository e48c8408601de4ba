"""What users run on a model: train, evaluate, instruct, and the data and base models they need."""

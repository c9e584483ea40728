"""Api for base models, training jobs, the runner around transformers/peft/trl, metrics,
checkpoints and the model registry.
"""

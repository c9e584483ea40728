"""Plain Python around transformers, peft and trl. No Django here: the runner child process
imports this package, the web and the worker processes never do."""

"""One small class per API resource. A new endpoint is a method here (a path and the type
its answer parses into), and a new resource a class that `Client.__init__` attaches."""

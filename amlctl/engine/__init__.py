"""The engine: desired state, dependency graph, plan, apply. It knows no backend."""

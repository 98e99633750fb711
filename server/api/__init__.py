"""HTTP blueprints, one per resource (health, admin, devices, models, training, openapi)."""

"""The cloud simulator behind ``stacktide simulate``: seeded nova traffic and its ground truth.

model (one instance's life, as nova's compute manager lives it) -> cloud (many instances,
cells, tenants, nova's periodic usage audit) -> nova (legacy/versioned wire messages) ->
delivery (reordered, late, duplicated) -> traffic (all of it, plus the truth from truth).
"""

"""Partner populations (issue 9): XP-min, self-play and specialist populations trained as one batched module.

- `pairs.py`: pair schedules (all ordered pairs, self-play, sampled partners), slots, j*, reward signs;
- `xpmin.py`: the training loop of all three methods, pair rollouts and all-pairs evaluation;
- `config.py`: the typed config and its presets (configs/population/);
- `cli.py`: `marl population train ...`.

The networks are `agents.population.Population`.
"""

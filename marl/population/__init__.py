"""Partner populations: XP-min, self-play and specialist populations trained as one batched module, and what
is built from them (extraction, a generalist partner, evaluation).

- `pairs.py`: pair schedules (all ordered pairs, self-play, sampled partners), slots, j*, reward signs;
- `rollout.py`: rollouts of many pairs at once (`PairCollector`), specialists' restricted env instances;
- `members.py`: building and loading populations, the all-pairs evaluation record, label counts;
- `xpmin.py`: the training loop of the three population methods; `ray_pairs.py`: pair rollouts on Ray;
- `evaluate.py`: cross-play, diversity, specialisation, overfitness; `extract.py`: extraction (DAgger, RL);
  `generalist.py`: a recurrent partner trained with a population;
- `config.py`: the typed config and its presets (configs/population/); `cli.py`: `marl population ...`.

The networks are `marl.agents.population.Population` (agents/population.py).
"""

"""``tf.distribute`` helpers below every layer that runs heavy loops: choosing the strategy
(``--strategy``), per-replica seeds, and running a function over the local replicas."""

from advtf.distribute.replicas import map_replicas, replica_seed
from advtf.distribute.strategy import (STRATEGIES, auto_choice, cluster_config, is_chief, is_multiworker,
                                      make_strategy, single_machine_strategy)

__all__ = ["STRATEGIES", "auto_choice", "cluster_config", "is_chief", "is_multiworker", "make_strategy",
           "map_replicas", "replica_seed", "single_machine_strategy"]

"""Public import path of the cluster environments (Lightning's `lightning.pytorch.plugins.environments`); they
live in `fulmen/strategies/cluster_environments.py`. Pass one as `Trainer(plugins=[...])` to use it instead of
the detected one."""

from fulmen.strategies.cluster_environments import ClusterEnvironment as ClusterEnvironment  # noqa: F401
from fulmen.strategies.cluster_environments import LightningEnvironment as LightningEnvironment  # noqa: F401
from fulmen.strategies.cluster_environments import SLURMEnvironment as SLURMEnvironment  # noqa: F401
from fulmen.strategies.cluster_environments import TorchElasticEnvironment as TorchElasticEnvironment  # noqa: F401
from fulmen.strategies.more_environments import KubeflowEnvironment as KubeflowEnvironment  # noqa: F401
from fulmen.strategies.more_environments import LSFEnvironment as LSFEnvironment  # noqa: F401
from fulmen.strategies.more_environments import MPIEnvironment as MPIEnvironment  # noqa: F401

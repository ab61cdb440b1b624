"""The library the three services share: data, features, environment, search,
learning, checkpoints, brokers. Modules import only from upstream of
themselves along bars -> features -> environment -> search -> replay ->
learner -> checkpoints -> validation -> promotion -> live."""

# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Infrastructure: what makes the model a well-behaved package, apart from the method itself.

* :mod:`~anomalib_promptmad.infrastructure.registration`: publishes PromptMAD and the multi-class datamodules in
  anomalib's namespaces at interpreter start-up (``anomalib train --model PromptMAD``).
* :mod:`~anomalib_promptmad.infrastructure.lazy_exports`: the package's public names, imported on first use.
* :mod:`~anomalib_promptmad.infrastructure.atomic_write`: the one writer of every file the package produces.
* :mod:`~anomalib_promptmad.infrastructure.checkpoint_io`: checkpoints written atomically, damaged ones named.
* :mod:`~anomalib_promptmad.infrastructure.training_guards`: resumable randomness, finite losses.
* :mod:`~anomalib_promptmad.infrastructure.precision`: the training precisions.
* :mod:`~anomalib_promptmad.infrastructure.timing`: the one timing loop of the benchmark tool and scripts.
* :mod:`~anomalib_promptmad.infrastructure.typed_yaml`: YAML mappings checked against a class's init signature by
  jsonargparse (the benchmark config, its model arguments, the prompt catalogues).

Nothing is imported here: the registration hook imports this package at interpreter start-up.
"""

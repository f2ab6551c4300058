# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""``python -m anomalib_promptmad.benchmark``: the ``promptmad-benchmark`` command."""

import sys

from anomalib_promptmad.benchmark.cli import main

sys.exit(main())

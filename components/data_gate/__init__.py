"""DataGate: stops the run before Transform when the data breaks the reviewed schema or drifts.

It gathers every finding into one verdict: the ExampleValidator's anomalies
(each split against the reviewed schema), the reviewed SQL checks of
schema/validations.pbtxt, categories of the
train split missing from another split, split skew (TFDV's L-infinity skew
comparator on category shares), and drift from the data the pushed model was
trained on (TFDV's drift comparator on category shares; image format shares
and mean cover size). Any finding fails the step, on every orchestrator,
unless the run allows anomalies; the verdict artifact records what was found
and whether it was allowed.

checks.py holds the checks (functions from statistics to findings, unit-tested
in tests/test_data_gate_checks.py), executor.py the step that runs them all and
writes the verdict, component.py the component.
"""

from components.data_gate.checks import finding_line, schema_anomalies
from components.data_gate.component import DataGate
from components.data_gate.executor import VERDICT_FILE, DataValidationError

__all__ = ["VERDICT_FILE", "DataGate", "DataValidationError", "finding_line", "schema_anomalies"]

"""Executes a compiled KFP v2 pipeline's container steps on this machine, as KFP's launcher would.

No cluster is needed: each step runs as a subprocess with the exact command and
arguments the compiled pipeline gives its container (TFX's kubeflow_v2_run_executor,
and for ExampleGens the file-based driver first), fed an ExecutorInput built
from the pipeline's IR with local artifact URIs. What this proves: the class
paths, serialized configs, artifact types, driver and parameters in the
compiled file are what the image will run. What it does not: the image build,
the cluster, its storage, Dataflow.

    python -m kubeflow.local_launcher --pipeline bookcover_pipeline.yaml --root /tmp/kfp-run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from tfx.dsl.io import fileio

INVOCATION_PLACEHOLDER = "{{$}}"
EXECUTOR_OUTPUT = "executor_output.json"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StepFailedError(RuntimeError):
    """A step's container command exited non-zero."""


def task_order(spec: dict) -> list[str]:
    """The root DAG's tasks, each after the tasks it depends on (stable by name)."""
    tasks = spec["root"]["dag"]["tasks"]
    ordered: list[str] = []
    while len(ordered) < len(tasks):
        ready = sorted(
            name
            for name, task in tasks.items()
            if name not in ordered and set(task.get("dependentTasks", [])) <= set(ordered)
        )
        if not ready:
            raise ValueError(f"the DAG has a cycle among {sorted(set(tasks) - set(ordered))}")
        ordered.extend(ready)
    return ordered


def load_pipeline(path: str) -> tuple[dict, dict]:
    """(PipelineSpec, runtime config) of a compiled pipeline: a KFP package (.yaml/.yml,
    a bare PipelineSpec, read as KFP's client reads it) or a Vertex AI PipelineJob (.json)."""
    with open(path) as f:
        if path.endswith((".yaml", ".yml")):
            import yaml

            spec = yaml.safe_load(f)
            return spec, {"gcsOutputDirectory": spec.get("defaultPipelineRoot", "")}
        job = json.load(f)
    return job["pipelineSpec"], job.get("runtimeConfig", {})


class LocalLauncher:
    """Runs the compiled steps in order, passing each step's output artifacts downstream."""

    def __init__(self, pipeline_path: str, root: str, python: str = sys.executable):
        self.spec, self.runtime = load_pipeline(pipeline_path)
        self.root = root.rstrip("/")
        self.python = python
        # task name -> output key -> RuntimeArtifact dicts, as each executor reported them
        self.outputs: dict[str, dict[str, list[dict]]] = {}

    # --- The IR ------------------------------------------------------------------

    def task(self, name: str) -> dict:
        return self.spec["root"]["dag"]["tasks"][name]

    def component(self, name: str) -> dict:
        return self.spec["components"][self.task(name)["componentRef"]["name"]]

    def container(self, name: str) -> dict | None:
        """The step's container spec; None for steps the platform runs itself (resolvers)."""
        label = self.component(name).get("executorLabel")
        executor = self.spec["deploymentSpec"]["executors"].get(label, {})
        return executor.get("container")

    def executor_input(self, name: str) -> dict:
        """The ExecutorInput KFP's launcher would hand this step, with local URIs."""
        task, component = self.task(name), self.component(name)
        parameters, parameter_values = {}, {}
        for key, source in task.get("inputs", {}).get("parameters", {}).items():
            value = self._parameter(source, component, key)
            parameters[key], parameter_values[key] = _kfp_value(value), value
        artifacts = {}
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            upstream = source["taskOutputArtifact"]
            produced = self.outputs.get(upstream["producerTask"], {})
            if produced.get(upstream["outputArtifactKey"]):
                artifacts[key] = {"artifacts": produced[upstream["outputArtifactKey"]]}
        outputs = {}
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            outputs[key] = {
                "artifacts": [
                    {
                        "name": f"local/{name}/{key}",
                        "uri": f"{self.root}/{name}/{key}",
                        "type": definition["artifactType"],
                        "metadata": {},
                    }
                ]
            }
        return {
            "inputs": {
                "parameters": parameters,
                "parameterValues": parameter_values,
                "artifacts": artifacts,
            },
            "outputs": {
                "artifacts": outputs,
                "outputFile": f"{self.root}/{name}/{EXECUTOR_OUTPUT}",
            },
        }

    def _parameter(self, source: dict, component: dict, key: str):
        if "runtimeValue" in source:
            constant = source["runtimeValue"]["constantValue"]
            (kind,) = constant
            return int(constant[kind]) if kind == "intValue" else constant[kind]
        if "componentInputParameter" in source:
            runtime = self.runtime
            values = {**runtime.get("parameters", {}), **runtime.get("parameterValues", {})}
            value = values[source["componentInputParameter"]]
            if isinstance(value, dict):  # the legacy {"stringValue": ...} form
                (value,) = value.values()
            return value
        raise ValueError(f"parameter {key} of {component}: unsupported source {source}")

    # --- Running -----------------------------------------------------------------

    def run(self, names: list[str] | None = None, progress=None) -> dict[str, dict]:
        """Runs the given steps (default: every container step) in DAG order; returns each
        step's ExecutorOutput as the executor wrote it. Steps not named pass on what an
        earlier run of theirs left under the root."""
        results = {}
        for name in task_order(self.spec):
            if not self.container(name):
                continue
            if names is None or name in names:
                if progress:
                    progress(f"{name} ...")
                results[name] = self.run_step(name)
            elif fileio.exists(f"{self.root}/{name}/{EXECUTOR_OUTPUT}"):
                self._record(name, self.executor_input(name), self._read_output(name))
        return results

    def run_step(self, name: str) -> dict:
        container = self.container(name)
        invocation = self.executor_input(name)
        fileio.makedirs(f"{self.root}/{name}")
        driver = container.get("lifecycle", {}).get("preCacheCheck")
        if driver:
            self._execute(name, "driver", driver["command"], driver["args"], invocation)
            # The platform records the driver's artifact updates (span, version, fingerprint)
            # on the outputs before it starts the executor, which reads the driver's
            # parameter updates from the same output file.
            updated = self._read_output(name)
            for key, listed in updated.get("artifacts", {}).items():
                for given, new in zip(
                    invocation["outputs"]["artifacts"][key]["artifacts"],
                    listed["artifacts"],
                    strict=True,
                ):
                    given["metadata"] = new.get("metadata", {})
        self._execute(name, "executor", container["command"], container["args"], invocation)
        written = self._read_output(name)
        self._record(name, invocation, written)
        return written

    def _record(self, name: str, invocation: dict, written: dict) -> None:
        """Keeps the step's outputs as it reported them, typed as its IR declares them."""
        definitions = self.component(name).get("outputDefinitions", {}).get("artifacts", {})
        self.outputs[name] = {}
        for key, given in invocation["outputs"]["artifacts"].items():
            reported = written.get("artifacts", {}).get(key, given)["artifacts"]
            self.outputs[name][key] = [
                {**a, "type": definitions[key]["artifactType"]} for a in reported
            ]

    def _execute(self, name: str, role: str, command, args, invocation: dict) -> None:
        serialized = json.dumps(invocation)
        argv = [self.python if c == "python" else c for c in command]
        argv += [a.replace(INVOCATION_PLACEHOLDER, serialized) for a in args]
        log_path = os.path.join(self.root, name, f"{role}.log")
        with open(log_path, "w") as log:
            done = subprocess.run(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            with open(log_path) as log:
                tail = "".join(log.readlines()[-40:])
            raise StepFailedError(f"{name} ({role}) exited {done.returncode}; {log_path}:\n{tail}")

    def _read_output(self, name: str) -> dict:
        with fileio.open(f"{self.root}/{name}/{EXECUTOR_OUTPUT}") as f:
            return json.loads(f.read())


def _kfp_value(value) -> dict:
    """The same value as KFP's legacy pipeline_spec Value, which TFX's entry points read
    when no inputs spec is passed (the compiled args pass none)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return {"stringValue": str(value)}
    return {"intValue": str(value)} if isinstance(value, int) else {"doubleValue": value}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pipeline", required=True, help="the compiled pipeline (.yaml package or .json job)"
    )
    parser.add_argument("--root", required=True, help="where the steps' artifacts go")
    parser.add_argument("--steps", nargs="*", help="only these steps (default: all)")
    args = parser.parse_args(argv)
    launcher = LocalLauncher(args.pipeline, os.path.abspath(args.root))
    launcher.run(args.steps or None, progress=lambda line: print(line, flush=True))
    print(f"done: {launcher.root}")


if __name__ == "__main__":
    main()

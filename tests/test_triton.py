"""The generated model repository in the real Triton Inference Server (2.51, CPU, Python backend), asked with
tritonclient over HTTP and gRPC. The server runs from .venv-triton, which holds the serving path only
(ideogram-trt[runtime], numpy<2, no PyTorch)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import json
import re
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from helpers import assert_one_line_error, run_cli, snapshot
from PIL import Image
from triton_server import TRITON_VENV, Server, triton_server
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from ideogram_trt.cli import main
from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.manifest import Flavor, Manifest
from ideogram_trt.runtime import Pipeline
from ideogram_trt.triton.client import ImageRequest, request_images, server_message, stream_images

REQUEST = ImageRequest('{"subject":"a lighthouse at dusk"}', 256, 384, "V4_INSTANT_8", 21)
RAW = {"prompt": REQUEST.prompt.encode(), "height": 256, "width": 384, "preset": b"V4_INSTANT_8", "seed": 21,
       "num_images": 1}  # fmt: skip
# 16 concurrent requests (4 threads, 2 instances) against 16 x the same run's single request. Measured here (2 CPU
# cores, shared with another job at load ~2.2): 0.91 and 0.95; with execute serialized across the instances by a
# file lock, 1.10. A single request's ONNX Runtime sessions already use both cores, so on this machine the floor
# catches an instance that is far slower under load (or a deadlocked/retrying one), not plain serialization: that
# needs more cores than one request uses. The fresh-clone run at ca90753 (LoRA-ready set, the other xdist worker
# busy) measured 1.29: the bound leaves room for that host and still catches a deadlocked or retrying instance (≥ 2).
LOAD_RATIO_BOUND = 1.5
KINDS = {"prompt": ("BYTES", np.object_), "preset": ("BYTES", np.object_), "height": ("INT32", np.int32),
         "width": ("INT32", np.int32), "seed": ("INT64", np.int64), "num_images": ("INT32", np.int32),
         "bogus": ("INT32", np.int32)}  # fmt: skip


def raw_inputs(module, change: dict) -> list:
    """REQUEST's inputs with ``change`` applied as is (None leaves an input out), past every client-side check."""
    inputs = []
    for name, value in {**RAW, **change}.items():
        if value is None:
            continue
        kind, dtype = KINDS[name]
        array = np.array(value if isinstance(value, list) else [value], dtype=dtype)
        tensor = module.InferInput(name, list(array.shape), kind)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def raw_infer(url: str, model: str, change: dict) -> None:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)
    try:
        client.infer(model, raw_inputs(grpc, change), client_timeout=60)
    finally:
        client.close()


def raw_stream(url: str, model: str, change: dict) -> None:
    """A decoupled request; raises IdeogramTrtError with the server's message."""
    import queue

    import tritonclient.grpc as grpc

    responses: queue.Queue = queue.Queue()
    client = grpc.InferenceServerClient(url)
    try:
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer(model, raw_inputs(grpc, change), enable_empty_final_response=True)
        while True:
            result, error = responses.get(timeout=60)
            if error is not None:
                raise IdeogramTrtError(server_message(error.message()))
            final = result.get_response().parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                return
    finally:
        client.stop_stream()
        client.close()


def counts(server: Server, model: str) -> tuple[int, int, int, int]:
    """Triton's own counters: statistics API (success, fail), metrics (nv_inference_request_success, the sum of
    nv_inference_request_failure over its reasons)."""
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]
    finally:
        client.close()
    with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=10) as response:
        text = response.read().decode()
    label = re.escape(f'model="{model}"')

    def metric(name: str) -> int:
        pattern = rf"^{name}{{[^}}]*{label}[^}}]*}} (\d+)"
        return sum(int(float(m)) for m in re.findall(pattern, text, re.M))

    return (int(stats["success"]["count"]), int(stats["fail"]["count"]), metric("nv_inference_request_success"),
            metric("nv_inference_request_failure"))  # fmt: skip


def wait_for_counts(server: Server, model: str, before: tuple, successes: int, failures: int) -> tuple:
    """Triton updates its counters just after the response: wait (at most 10 s) for the expected deltas."""
    expected = (before[0] + successes, before[1] + failures, before[2] + successes, before[3] + failures)
    deadline = time.monotonic() + 10
    while (now := counts(server, model)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert now == expected, f"{model}: counters {now}, expected {expected} (from {before})"
    return now


class TestTritonServer:
    @pytest.fixture(scope="class")
    def engine_set(self, tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """LoRA-ready (rank up to 8): without an adapter, a request is served as by a set without the side path."""
        out = tmp_path_factory.mktemp("engines") / "ort"
        assert main(["build-engines", "--model", str(tiny_dir), "--out", str(out), "--recipe", "fp8-wo",
                     "--flavor", "onnxruntime", "--buckets", "256x256,256x384", "--max-batch", "2",
                     "--lora-rank", "8"]) == 0  # fmt: skip
        return out

    @pytest.fixture(scope="class")
    def adapters(self, tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """The adapters folder `triton-repo --adapters` copies: kohya-layout ranks 2, 3 and 6."""
        from test_lora import KOHYA_MODULES, write_adapter

        folder = tmp_path_factory.mktemp("adapters")
        config = json.loads((tiny_dir / "transformer" / "config.json").read_text())
        layers = list(range(config["num_layers"]))
        for name, rank, seed in (("a", 2, 11), ("b", 3, 12), ("big", 6, 13)):
            write_adapter(folder / f"{name}.safetensors", config, layers, KOHYA_MODULES, rank, seed, kohya_alpha=2.0)
        return folder

    @pytest.fixture(scope="class")
    def server(self, engine_set: Path, adapters: Path, tmp_path_factory: pytest.TempPathFactory):
        repo = tmp_path_factory.mktemp("triton") / "repo"
        assert main(["triton-repo", "--engines", str(engine_set), "--out", str(repo), "--instances", "2",
                     "--adapters", str(adapters)]) == 0  # fmt: skip
        assert main(["triton-repo", "--engines", str(engine_set), "--out", str(repo),
                     "--model-name", "ideogram4_stream", "--decoupled"]) == 0  # fmt: skip
        assert main(["triton-repo", "--engines", str(engine_set), "--out", str(repo),
                     "--model-name", "ideogram4_copy", "--copy"]) == 0  # fmt: skip
        with triton_server(repo, tmp_path_factory.mktemp("triton-run")) as running:
            yield running

    def test_http_and_grpc_return_the_image_generate_makes(self, server, engine_set: Path, tmp_path: Path) -> None:
        grpc_image, grpc_png = request_images(server.grpc, REQUEST, protocol="grpc")
        http_image, http_png = request_images(server.http, REQUEST, protocol="http")
        assert grpc_image.shape == (1, 256, 384, 3) and grpc_image.dtype == np.uint8
        assert np.array_equal(grpc_image, http_image)
        # `ideogram-trt generate` in the serving environment, and the Pipeline here: the same pixels.
        out = tmp_path / "generate.png"
        command = [str(TRITON_VENV / "bin" / "ideogram-trt"), "generate", REQUEST.prompt, "--engines", str(engine_set)]
        command += ["--height", "256", "--width", "384", "--preset", "V4_INSTANT_8", "--seed", "21", "-o", str(out)]
        subprocess.run(command, check=True, capture_output=True)
        assert np.array_equal(np.asarray(Image.open(out)), grpc_image[0])
        local = Pipeline.from_engines(engine_set)(REQUEST.prompt, height=256, width=384, preset="V4_INSTANT_8", seed=21)
        assert np.array_equal(local.images, grpc_image)
        png = Image.open(io.BytesIO(grpc_png[0]))
        assert np.array_equal(np.asarray(png), grpc_image[0]) and grpc_png[0] == http_png[0]
        assert png.text["seed"] == "21" and png.text["prompt"] == REQUEST.prompt  # type: ignore[attr-defined]

    def test_response_pngs_carry_the_metadata_generate_writes(self, server, engine_set: Path, tmp_path: Path) -> None:
        """Issue 14: a served PNG's text chunks are the ones `ideogram-trt generate` writes, key for key, and value
        for value for the same request (plain and streamed models, two images each)."""
        request = dataclasses.replace(REQUEST, num_images=2)
        out = tmp_path / "generate.png"
        command = [str(TRITON_VENV / "bin" / "ideogram-trt"), "generate", REQUEST.prompt, "--engines", str(engine_set)]
        command += ["--height", "256", "--width", "384", "--preset", "V4_INSTANT_8", "--seed", "21", "-n", "2"]
        subprocess.run([*command, "-o", str(out)], check=True, capture_output=True)
        generated = [Image.open(out.with_name(f"generate-{k}.png")).text for k in range(2)]  # type: ignore[attr-defined]
        assert set(generated[0]) == {"prompt", "seed", "preset", "bucket", "engine_set", "software", "parameters"}
        assert [g["seed"] for g in generated] == ["21", "22"]
        _, plain = request_images(server.grpc, request)
        _, streamed = stream_images(server.grpc, request, "ideogram4_stream", lambda s, n: None)
        for pngs in (plain, streamed):
            assert [Image.open(io.BytesIO(p)).text for p in pngs] == generated  # type: ignore[attr-defined]
        # Another request: the same keys; its own prompt, seed, bucket and sampling parameters.
        _, other = request_images(server.grpc, ImageRequest("a cat", 256, 256, "V4_TURBO_12", 5))
        text = Image.open(io.BytesIO(other[0])).text  # type: ignore[attr-defined]
        assert set(text) == set(generated[0])
        fields = (text["prompt"], text["seed"], text["preset"], text["bucket"])
        assert fields == ("a cat", "5", "V4_TURBO_12", "256x256")
        assert json.loads(text["parameters"])["steps"] == 12 and text["engine_set"] == generated[0]["engine_set"]

    def test_a_copied_engine_set_serves_the_same_image(self, server) -> None:
        """--copy puts the engine set inside the repository (a relative path the model resolves at load)."""
        copied, _ = request_images(server.grpc, REQUEST, model="ideogram4_copy")
        referenced, _ = request_images(server.grpc, REQUEST)
        assert np.array_equal(copied, referenced)

    def test_metadata_lists_the_declared_inputs_and_outputs(self, server) -> None:
        import tritonclient.http as http

        client = http.InferenceServerClient(server.http)
        try:
            metadata = client.get_model_metadata("ideogram4")
        finally:
            client.close()
        inputs = {i["name"]: (i["datatype"], i["shape"]) for i in metadata["inputs"]}
        assert inputs == {
            "prompt": ("BYTES", [1]),
            "height": ("INT32", [1]),
            "width": ("INT32", [1]),
            "preset": ("BYTES", [1]),
            "seed": ("INT64", [1]),
            "num_images": ("INT32", [1]),
            "lora": ("BYTES", [1]),
        }
        outputs = {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]}
        assert outputs == {"image": ("UINT8", [-1, -1, -1, 3]), "png": ("BYTES", [-1])}

    def test_metrics_answer(self, server) -> None:
        request_images(server.grpc, REQUEST)
        with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'nv_inference_request_success{model="ideogram4",version="1"}' in text

    def test_decoupled_streams_one_message_per_step_then_the_image(self, server) -> None:
        steps: list[tuple[int, int]] = []
        image, _ = stream_images(server.grpc, REQUEST, "ideogram4_stream", lambda s, n: steps.append((s, n)))
        assert steps == [(k, 8) for k in range(1, 9)]
        plain, _ = request_images(server.grpc, REQUEST)
        assert np.array_equal(image, plain)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"prompt": ""}, "the prompt is empty"),
            ({"height": 1024, "width": 1024}, "1024x1024 is not a bucket of this engine set (nearest: 256x256"),
            ({"preset": "V9_MAGIC"}, "unknown preset 'V9_MAGIC'"),
            ({"num_images": 3}, "num_images 3 is above this model's limit of 2"),
            ({"lora": "nope"}, "unknown LoRA adapter 'nope'"),
            ({"lora": "a,b:0.5,big"}, "adapters of total rank 11 (a 2, b 3, big 6"),
            ({"lora": "/etc/passwd"}, "name one of this server's adapters (a, b, big), not a file"),
        ],
    )
    def test_bad_requests_get_our_message_and_the_server_keeps_serving(self, server, change, message) -> None:
        for protocol, url in (("grpc", server.grpc), ("http", server.http)):
            with pytest.raises(IdeogramTrtError, match=rf".*{__import__('re').escape(message)}"):
                request_images(url, dataclasses.replace(REQUEST, **change), protocol=protocol)
        image, _ = request_images(server.grpc, REQUEST)
        assert image.shape == (1, 256, 384, 3)

    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_num_images_equal_to_the_limit_is_served(self, server, engine_set: Path, protocol) -> None:
        """The limit is --max-batch 2 of the engine set (limit + 1 is refused above): exactly 2 images, seeds 21 and
        22, the pixels the Pipeline makes here for the same request."""
        limit = json.loads((engine_set / "manifest.json").read_text())["max_batch"]
        assert limit == 2
        url = server.grpc if protocol == "grpc" else server.http
        images, pngs = request_images(url, dataclasses.replace(REQUEST, num_images=limit), protocol=protocol)
        assert images.shape == (limit, 256, 384, 3) and images.dtype == np.uint8 and len(pngs) == limit
        local = Pipeline.from_engines(engine_set)(
            REQUEST.prompt, height=256, width=384, preset="V4_INSTANT_8", seed=21, num_images=limit
        )
        assert np.array_equal(local.images, images)
        assert [Image.open(io.BytesIO(p)).text["seed"] for p in pngs] == ["21", "22"]  # type: ignore[attr-defined]
        for k, png in enumerate(pngs):
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), images[k]), f"png {k}"

    def test_wrong_dtype_is_refused_by_triton_and_the_server_keeps_serving(self, server) -> None:
        import tritonclient.grpc as grpc
        from tritonclient.utils import InferenceServerException

        client = grpc.InferenceServerClient(server.grpc)
        try:
            prompt = grpc.InferInput("prompt", [1], "BYTES")
            prompt.set_data_from_numpy(np.array([b"a cat"], dtype=np.object_))
            seed = grpc.InferInput("seed", [1], "FP32")
            seed.set_data_from_numpy(np.array([1.5], dtype=np.float32))
            with pytest.raises(InferenceServerException, match=r"seed.*FP32.*INT64"):
                client.infer("ideogram4", [prompt, seed])
        finally:
            client.close()
        assert request_images(server.grpc, REQUEST)[0].shape == (1, 256, 384, 3)

    # --- issue 12: oversized prompts, Triton's own failure counters, the client against a live server ----------

    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_an_oversized_prompt_is_refused_at_once_and_the_server_keeps_serving(self, server, protocol) -> None:
        url = server.grpc if protocol == "grpc" else server.http
        huge = dataclasses.replace(REQUEST, prompt="x" * (16 << 20))  # 16 MB: tokenizing it took 18 s and 1.9 GB
        start = time.perf_counter()
        with pytest.raises(IdeogramTrtError, match=r"the prompt is 16777216 bytes; prompts longer than 262144 byt"):
            request_images(url, huge, protocol=protocol)
        elapsed = time.perf_counter() - start
        assert elapsed < 1.0, f"{elapsed:.2f} s to refuse a 16 MB prompt"
        assert request_images(url, REQUEST, protocol=protocol)[0].shape == (1, 256, 384, 3)

    def test_bad_requests_count_as_failures_in_triton_and_good_ones_as_successes(self, server) -> None:
        before = {model: counts(server, model) for model in ("ideogram4", "ideogram4_stream")}
        refusals = {  # inputs sent as they are (no client-side checks): the model's one-line message
            "unknown preset": ({"preset": b"V9_MAGIC"}, "unknown preset 'V9_MAGIC'"),
            "bad size": ({"height": 1024, "width": 1024}, "1024x1024 is not a bucket of this engine set"),
            "num_images above the limit": ({"num_images": 3}, "num_images 3 is above this model's limit of 2"),
            "num_images 0": ({"num_images": 0}, "num_images must be at least 1, got 0"),
            "negative seed": ({"seed": -1}, "seed -1: give a whole number from 0"),
            "seed + n past int64": ({"seed": 2**63 - 1, "num_images": 2}, "2**63 - 2 for 2 images"),
            "height without width": ({"width": None}, "input 'height' was sent without 'width'"),
            "non-UTF-8 prompt": ({"prompt": b"caf\xe9 \xff"}, "input 'prompt' is not UTF-8 text"),
            "oversized prompt": ({"prompt": b"x" * (1 << 20)}, "the prompt is 1048576 bytes"),
            "empty prompt": ({"prompt": b" "}, "the prompt is empty"),
            "missing prompt": ({"prompt": None}, "input 'prompt' is required"),  # Triton 2.51 lets it through
        }
        for what, (change, message) in refusals.items():
            with pytest.raises(InferenceServerException) as caught:
                raw_infer(server.grpc, "ideogram4", change)
            line = server_message(caught.value.message())
            assert message in line and "\n" not in line and "Traceback" not in line and "At:" not in line, what
        expected_backend_failures = len(refusals)
        # Refused by Triton itself before the model runs (shape [2] for dims [1]; an undeclared input): Triton
        # counts these nowhere in the model's statistics.
        for change, message in (
            ({"seed": [1, 2]}, "Expected [1], got [2]"),
            ({"bogus": 1}, "unexpected inference input 'bogus'"),
        ):
            with pytest.raises(InferenceServerException, match=re.escape(message)):
                raw_infer(server.grpc, "ideogram4", change)
        for change in ({"preset": b"V9_MAGIC"}, {"num_images": 3}, {"prompt": b"\xff"}):
            with pytest.raises(IdeogramTrtError):
                raw_stream(server.grpc, "ideogram4_stream", change)
        mid = wait_for_counts(server, "ideogram4", before["ideogram4"], 0, expected_backend_failures)
        wait_for_counts(server, "ideogram4_stream", before["ideogram4_stream"], 0, 3)
        assert request_images(server.grpc, REQUEST)[0].shape == (1, 256, 384, 3)
        assert request_images(server.http, REQUEST, protocol="http")[0].shape == (1, 256, 384, 3)
        stream_images(server.grpc, REQUEST, "ideogram4_stream", lambda s, n: None)
        after = wait_for_counts(server, "ideogram4", before["ideogram4"], 2, expected_backend_failures)
        wait_for_counts(server, "ideogram4_stream", before["ideogram4_stream"], 1, 3)
        print(f"\nideogram4 (success, fail, metric success, metric failure): {before['ideogram4']} -> {mid} -> {after}")

    @pytest.mark.parametrize("scheme", ["", "grpc://", "http://"])
    def test_the_client_command_writes_the_png_atomically_and_accepts_a_url_scheme(
        self, server, tmp_path: Path, capsys, scheme: str
    ) -> None:
        protocol = "http" if scheme == "http://" else "grpc"
        url = scheme + (server.http if protocol == "http" else server.grpc)
        out = tmp_path / "pictures" / "fox.png"
        code, stdout, err = run_cli(["triton-client", REQUEST.prompt, "--url", url, "--protocol", protocol,
                                     "--height", "256", "--width", "384", "--preset", "V4_INSTANT_8", "-o", out,
                                     "-n", "2"], capsys)  # fmt: skip
        assert code == 0, err
        paths = [out.with_name("fox-0.png"), out.with_name("fox-1.png")]
        assert stdout.split() == [str(p) for p in paths]
        assert sorted(out.parent.iterdir()) == paths  # no temporaries
        assert Image.open(paths[1]).text["seed"] == "1"  # type: ignore[attr-defined]

    @pytest.mark.parametrize("mode", [["--protocol", "grpc"], ["--protocol", "http"], ["--stream"]])
    def test_a_client_timeout_is_one_line_and_the_server_keeps_serving(self, server, tmp_path: Path, capsys, mode):
        url = server.http if "http" in mode else server.grpc
        model = ["--model", "ideogram4_stream"] if "--stream" in mode else []
        before = snapshot(tmp_path)
        code, _, err = run_cli(["triton-client", REQUEST.prompt, "--url", url, *mode, *model, "--timeout", "0.01",
                                "-o", tmp_path / "fox.png"], capsys)  # fmt: skip
        assert_one_line_error(code, err, url, "no answer within --timeout 0.01 s", "raise --timeout")
        assert snapshot(tmp_path) == before
        assert request_images(server.grpc, REQUEST)[0].shape == (1, 256, 384, 3)

    def test_concurrent_requests_with_different_adapters_each_get_their_own_image(
        self, server, engine_set: Path, adapters: Path
    ) -> None:
        """Adapters per request (docs/LORA.md §3): two at once on two instances, each pixel-identical to the
        Pipeline here with that adapter, and different from each other and from no adapter."""
        a, b = adapters / "a.safetensors", adapters / "b.safetensors"
        choices = {"a": [(a, 1.0)], "b:0.5,a:0.25": [(b, 0.5), (a, 0.25)]}
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = {text: pool.submit(request_images, server.grpc, dataclasses.replace(REQUEST, lora=text))
                       for text in choices}  # fmt: skip
            served = {text: future.result(timeout=300)[0] for text, future in futures.items()}
        pipe = Pipeline.from_engines(engine_set)
        for text, loras in choices.items():
            local = pipe(REQUEST.prompt, height=256, width=384, preset="V4_INSTANT_8", seed=21, loras=loras)
            assert np.array_equal(local.images, served[text]), text
        plain, _ = request_images(server.grpc, REQUEST)
        assert not np.array_equal(served["a"], served["b:0.5,a:0.25"]) and not np.array_equal(plain, served["a"])

    def test_load_16_concurrent_requests_from_4_threads(self, server, engine_set: Path, capsys) -> None:
        # The same run's single-request time: the median of 3 requests one after another (after one warm-up).
        request_images(server.grpc, dataclasses.replace(REQUEST, seed=99), timeout=120)
        singles = []
        for _ in range(3):
            start = time.perf_counter()
            request_images(server.grpc, dataclasses.replace(REQUEST, seed=99), timeout=120)
            singles.append(time.perf_counter() - start)
        single = statistics.median(singles)

        def worker(index: int) -> list[tuple[int, float, np.ndarray]]:
            done = []
            for k in range(4):
                seed = 100 + 4 * index + k
                start = time.perf_counter()
                image, _ = request_images(server.grpc, dataclasses.replace(REQUEST, seed=seed), timeout=120)
                done.append((seed, time.perf_counter() - start, image))
            return done

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = [f.result(timeout=300) for f in [pool.submit(worker, i) for i in range(4)]]
        wall = time.perf_counter() - start
        responses = {seed: image for r in results for seed, _, image in r}
        assert sorted(responses) == list(range(100, 116))
        latencies = sorted(latency for r in results for _, latency, _ in r)
        # Throughput floor against the same run's single request: 16 requests over 2 instances.
        ratio = wall / (16 * single)
        assert ratio < LOAD_RATIO_BOUND, f"16 concurrent requests took {wall:.2f} s = {ratio:.2f} x 16 singles"
        # Every concurrent response is the image the Pipeline makes here for the same request (computed after the
        # timing, one request at a time).
        pipe = Pipeline.from_engines(engine_set)
        for seed, image in sorted(responses.items()):
            local = pipe(REQUEST.prompt, height=256, width=384, preset="V4_INSTANT_8", seed=seed)
            assert image.shape == (1, 256, 384, 3) and np.array_equal(local.images, image), f"seed {seed}"
        p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
        report = {"requests": 16, "threads": 4, "instances": 2, "seconds": round(wall, 2),
                  "throughput_rps": round(16 / wall, 2), "p50_s": round(p50, 3), "p95_s": round(p95, 3),
                  "single_s": round(single, 3), "ratio_to_16_singles": round(ratio, 3)}  # fmt: skip
        with capsys.disabled():
            print(f"\nTriton load (tiny checkpoint, ONNX Runtime CPU, 256x384 V4_INSTANT_8): {json.dumps(report)}")


class FakePbUtils:
    """A stand-in for Triton's ``triton_python_backend_utils`` (only inside the server): just what initialize uses."""

    @staticmethod
    def using_decoupled_model_transaction_policy(config: dict) -> bool:
        return bool(config.get("model_transaction_policy", {}).get("decoupled"))


def test_model_load_refuses_a_broken_engine_set_with_our_message(tmp_path: Path, tiny_dir: Path, monkeypatch) -> None:
    from ideogram_trt.triton import model as triton_model

    engines = tmp_path / "engines"
    assert main(["build-engines", "--model", str(tiny_dir), "--out", str(engines), "--recipe", "fp8-wo",
                 "--flavor", "onnxruntime", "--buckets", "256x256", "--components", "dit_uncond"]) == 0  # fmt: skip
    (engines / Manifest.load(engines).engines["dit_uncond"].file).unlink()
    monkeypatch.setattr(triton_model, "pb_utils", FakePbUtils)
    config = {"name": "ideogram4", "parameters": {"engine_set": {"string_value": str(engines)}}}
    args = {"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"}
    with pytest.raises(RuntimeError, match=r"^ideogram4: .*dit_uncond\..*\.onnx: missing \(engine dit_uncond\)"):
        triton_model.TritonPythonModel().initialize(args)


def test_tensorrt_repository_config_is_structurally_sound(tmp_path: Path, tiny_dir: Path) -> None:
    """A repository for a TensorRT engine set (which cannot load here): its config.pbtxt, parsed as Triton's own
    ModelConfig protobuf, has one GPU instance group per GPU, the Python backend and the declared I/O."""
    ort_set = tmp_path / "ort"
    assert main(["build-engines", "--model", str(tiny_dir), "--out", str(ort_set), "--recipe", "fp8-wo",
                 "--flavor", "onnxruntime", "--buckets", "256x256", "--components", "dit_uncond"]) == 0  # fmt: skip
    manifest = Manifest.load(ort_set)
    rtx_set = tmp_path / "rtx"
    rtx_set.mkdir()
    dataclasses.replace(
        manifest, flavor=Flavor.TENSORRT_RTX, runtime_version="1.7.1.116", compute_capabilities=["8.9"]
    ).save(rtx_set)
    repo = tmp_path / "repo"
    assert main(["triton-repo", "--engines", str(rtx_set), "--out", str(repo), "--gpus", "0,1", "--instances", "2",
                 "--decoupled", "--preset", "V4_TURBO_12"]) == 0  # fmt: skip
    config = text_format.Parse((repo / "ideogram4" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert (config.name, config.backend, config.max_batch_size) == ("ideogram4", "python", 0)
    assert [(g.kind, g.count, list(g.gpus)) for g in config.instance_group] == [
        (mc.ModelInstanceGroup.KIND_GPU, 2, [0]),
        (mc.ModelInstanceGroup.KIND_GPU, 2, [1]),
    ]
    assert config.model_transaction_policy.decoupled
    assert [i.name for i in config.input] == ["prompt", "height", "width", "preset", "seed", "num_images", "lora"]
    assert [i.optional for i in config.input] == [False, True, True, True, True, True, True]
    assert [o.name for o in config.output] == ["image", "png", "step", "steps"]
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    assert parameters["backend"] == "tensorrt" and parameters["engine_set"] == str(rtx_set.resolve())
    assert json.loads(parameters["defaults"]) == {"preset": "V4_TURBO_12"}
    assert (repo / "ideogram4" / "1" / "model.py").is_file() and (repo / "README.md").is_file()
    assert "tritonserver --model-repository=" in (repo / "README.md").read_text()

"""A small Python client of the Parallax tuning service (``parallax serve``)."""
import os

import grpc

from . import _stubs

pb2, pb2_grpc, _ = _stubs.load()


class Client:
    """Thin wrapper over the generated stub: auth metadata, TLS and deadlines.

    Messages are the generated ones (``parallax_client.pb2``); dicts are accepted where a
    message is expected, with enum values as names, e.g. ``{"mode": "MODE_DECODE"}``.
    Errors surface as ``grpc.RpcError`` (``.code()``, ``.details()``).
    """

    def __init__(self, server="127.0.0.1:50051", token=None, token_file=None, root_cert=None,
                 lookup_timeout=0.25, timeout=30.0):
        if token_file:
            with open(token_file) as f:
                token = f.read().strip()
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if root_cert:
            creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
            self._channel = grpc.secure_channel(server, creds)
        else:
            self._channel = grpc.insecure_channel(server)
        self._stub = pb2_grpc.TunerStub(self._channel)
        self._lookup_timeout = lookup_timeout
        self._timeout = timeout

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _msg(cls, value):
        return value if isinstance(value, cls) else cls(**(value or {}))

    def get_best_config(self, device, problem, generator_version=0):
        request = pb2.GetBestConfigRequest(device=self._msg(pb2.DeviceFingerprint, device),
                                           problem=self._msg(pb2.Problem, problem),
                                           generator_version=generator_version)
        return self._stub.GetBestConfig(request, timeout=self._lookup_timeout, metadata=self._metadata)

    def submit(self, problems, budget_seconds, strategy="STRATEGY_GUIDED", device_ordinal=None, resume_job_id=0):
        request = pb2.SubmitTuningRequest(problems=[self._msg(pb2.Problem, p) for p in problems],
                                          budget_seconds=budget_seconds, strategy=strategy,
                                          resume_job_id=resume_job_id)
        if device_ordinal is not None:
            request.device_ordinal = device_ordinal
        return self._stub.SubmitTuning(request, timeout=self._timeout, metadata=self._metadata)

    def watch(self, job_id, timeout=None):
        """Yields JobProgress snapshots until the job ends."""
        yield from self._stub.WatchJob(pb2.WatchJobRequest(job_id=job_id), timeout=timeout, metadata=self._metadata)

    def cancel(self, job_id):
        return self._stub.CancelJob(pb2.CancelJobRequest(job_id=job_id), timeout=self._timeout,
                                    metadata=self._metadata).progress

    def list_jobs(self, limit=0, state="JOB_STATE_UNSPECIFIED"):
        request = pb2.ListJobsRequest(limit=limit, state=state)
        return list(self._stub.ListJobs(request, timeout=self._timeout, metadata=self._metadata).jobs)

    def list_configs(self, device_fingerprint="", problem_key=""):
        """Every matching ConfigEntry, following page tokens."""
        out, token = [], ""
        while True:
            request = pb2.ListConfigsRequest(device_fingerprint=device_fingerprint, problem_key=problem_key,
                                             page_token=token)
            response = self._stub.ListConfigs(request, timeout=self._timeout, metadata=self._metadata)
            out.extend(response.configs)
            token = response.next_page_token
            if not token:
                return out

    def export_results(self, path):
        """Writes the server's cache to ``path``; returns the byte count."""
        tmp = path + ".partial"
        written = 0
        with open(tmp, "wb") as f:
            for chunk in self._stub.ExportResults(pb2.ExportResultsRequest(), metadata=self._metadata):
                if chunk.offset != written:
                    raise IOError(f"export: chunk at {chunk.offset}, expected {written}")
                f.write(chunk.data)
                written += len(chunk.data)
        os.replace(tmp, path)
        return written

    def import_results(self, path, chunk_bytes=1 << 20):
        total = os.path.getsize(path)

        def chunks():
            with open(path, "rb") as f:
                first = True
                while True:
                    data = f.read(chunk_bytes)
                    if not data:
                        return
                    yield pb2.ImportChunk(data=data, total_bytes=total if first else 0)
                    first = False

        return self._stub.ImportResults(chunks(), metadata=self._metadata)

    def health(self, service="parallax.v1.Tuner"):
        """True when grpc.health.v1 reports SERVING (encoded by hand: no grpc_health package needed)."""
        name = service.encode()
        request = (b"\x0a" + bytes([len(name)]) + name) if name else b""
        call = self._channel.unary_unary("/grpc.health.v1.Health/Check")
        return call(request, timeout=self._timeout) == b"\x08\x01"

"""CLI jobs of deployment: ``govgym export`` (a policy as a numpy-only governor artifact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from govgym.deploy.artifact import META_FILE, artifact_bytes, export, is_agent_source, timed_load


def export_governor(source: str, out: Path, instances: str = "") -> dict[str, Any]:
    """Export ``source`` (agent or heuristic spec) to ``out``; print the artifact's size and load time.

    For an agent the reference the artifact is checked against is SB3's own forward
    (``AgentPolicy``: the agent's safe files, no pickle), loaded here because deploy imports no SB3.
    """
    reference = None
    if is_agent_source(source):
        from govgym.agents.policies import AgentPolicy

        reference = AgentPolicy(source)
    path = export(source, out, reference=reference, instances=instances)
    gov, seconds = timed_load(out)
    size = artifact_bytes(out)
    files = [META_FILE, *(["policy.safetensors"] if gov.kind == "agent" else [])]
    print(
        f"wrote {path.parent}/ ({', '.join(files)}): {gov.kind}, {len(gov.action_names)} actions, "
        f"K={gov.interval_steps} steps per decision; artifact size {size} bytes, load time {seconds * 1000:.2f} ms; "
        "actions match the source on 512 checked observations"
    )
    return {"path": str(path), "bytes": size, "load_ms": seconds * 1000, "kind": gov.kind}


__all__ = ["export_governor"]

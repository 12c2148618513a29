"""ray_cluster.yaml is a valid `ray up` config, per the schema that ships inside the installed ray package."""
import importlib.util
import json
from pathlib import Path

import jsonschema
import yaml

from conftest import REPO


def test_cluster_file_validates_against_rays_own_schema():
    ray_dir = Path(importlib.util.find_spec("ray").origin).parent  # found, not imported
    schema = json.loads((ray_dir / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    assert any("scripts/setup.sh" in c for c in config["setup_commands"])
    assert config["available_node_types"]["gpu_worker"]["max_workers"] == 8

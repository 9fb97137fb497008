"""YAML loading (safe_load only) and JSON-Schema validation with errors a person can act on."""
from __future__ import annotations

import functools
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    pass


def load_yaml(path: Path):
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None


@functools.cache
def _validator(schema_path: Path, definition: str) -> jsonschema.Draft202012Validator:
    schema = load_yaml(schema_path)
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]})


def validate(instance, schema_path: Path, definition: str, where: str) -> None:
    """Validate against `$defs/<definition>` of a schema file; raise ConfigError naming the key."""
    error = jsonschema.exceptions.best_match(_validator(Path(schema_path), definition).iter_errors(instance))
    if error is None:
        return
    location = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        unexpected = sorted(set(error.instance) - set(allowed))
        raise ConfigError(f"{where}: unknown key {', '.join(map(repr, unexpected))} in {location}; "
                          f"valid keys: {', '.join(allowed)}")
    if error.validator == "required":
        raise ConfigError(f"{where}: {error.message} in {location}")
    raise ConfigError(f"{where}: bad value at {location}: {error.message}")

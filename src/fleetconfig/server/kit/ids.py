"""Object identifiers: a readable type prefix and a random suffix."""

import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str, length: int = 20) -> str:
    """Return an id such as ``dpl_3k9x...``; ~103 bits of randomness at the default length."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


WORKSPACE = "wsp_"
API_KEY = "api_key_"
CONFIG_TYPE = "cfg_typ_"
CONFIG_SCHEMA = "cfg_sch_"
SCHEMA_DOCUMENT = "doc_"
CONFIG_INSTANCE = "cfg_inst_"
GIT_COMMIT = "git_commit_"
RELEASE = "rls_"
DEVICE = "dvc_"
DEPLOYMENT = "dpl_"

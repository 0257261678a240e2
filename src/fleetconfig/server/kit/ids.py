"""Object identifiers: a readable type prefix and a random suffix."""

import base64
import secrets


def new_id(prefix: str, length: int = 20) -> str:
    """Return an id such as ``dpl_3k9x...``: lowercase base32 (``a-z``, ``2-7``), 5 bits a
    character, so 100 bits of randomness at the default length.

    One call to the system's random source per id (not one per character): bulk operations
    make thousands at once.
    """
    random_bytes = secrets.token_bytes((length * 5 + 7) // 8)
    return prefix + base64.b32encode(random_bytes).decode("ascii").lower()[:length]


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
GROUP = "grp_"
PROVISIONING_TOKEN = "prov_tok_"
ROLLOUT = "rol_"

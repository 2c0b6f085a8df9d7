"""The backup restore drill, against real servers: SeaweedFS's S3 gateway (`weed`, tests/s3server.py), a real
PostgreSQL and Barman Cloud -- the tools CloudNativePG runs for its backups -- with the bucket layout Plinth
gives every cluster: bucket `<platform>-backups`, Barman's destination `s3://<platform>-backups/postgres/
<namespace>`, server name = the cluster's name.

Rows written before and after a base backup come back from the bucket alone, after the server and its data
directory are gone; rows written after the recovery target do not. The server speaks HTTPS only, with the
filer's planned TLS arguments; Barman Cloud trusts its CA as the plugin's `endpointCA` makes it. In the same S3
server, a team's identity reads its own prefix of the models bucket and nothing else.
"""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pgserver import Postgres, postgres_account
from s3server import Identity, S3Server, weed
from support import barman_cloud_bin
from plinth.modules.backups import IDENTITY, PREFIX
from plinth.modules.featurestore import NAMESPACE, POSTGRES
from plinth.modules.objectstore.identities import s3_config

pytestmark = pytest.mark.toolchain  # weed: runs after the other tests (tests/conftest.py)

PLATFORM = "test"
BACKUPS, MODELS = f"{PLATFORM}-backups", f"{PLATFORM}-models"
CLUSTER = POSTGRES
DESTINATION = f"s3://{BACKUPS}/{PREFIX}/{NAMESPACE}"
"""Where modules/backups points Feast's Cluster (its ObjectStore's destinationPath; the server is the cluster)."""
ARCHIVE_SECONDS = 60
"""How long a switched WAL segment may take to reach the bucket, and a restored server to finish recovery."""

# The identities exactly as the object store plans them (modules/objectstore/identities.py): the backups identity
# owns its bucket (bucket-scoped actions: it can touch no other bucket); a team reads its own prefix of the models
# bucket. The admin stands in for the chart's bucket Job.
ADMIN = Identity("admin", ("Admin", "Read", "List", "Write", "Tagging"))
_PLANNED = {entry["name"]: entry for entry in s3_config(PLATFORM, ("fraud", "credit"), "drill-seed")["identities"]}


def planned(name: str) -> Identity:
    entry = _PLANNED[name]
    keys = entry["credentials"][0]
    return Identity(name, tuple(entry["actions"]), keys["accessKey"], keys["secretKey"])


BACKUPS_RW, TEAM_FRAUD = planned(IDENTITY), planned("team-fraud")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with S3Server(weed(), tmp_path_factory.mktemp("seaweedfs"), ADMIN, [BACKUPS_RW, TEAM_FRAUD],
                  [BACKUPS, MODELS]) as server:
        yield server


# --- a team's identity on the models bucket --------------------------------------------------------------------


def test_a_team_identity_reads_its_own_prefix_of_the_models_bucket_and_nothing_else(s3):
    for key in ("fraud/scorer/model.bin", "credit/risk/model.bin", "fraud-lookalike/model.bin"):
        assert s3.request(ADMIN, "PUT", MODELS, key, key.encode()).status == 200

    own = s3.request(TEAM_FRAUD, "GET", MODELS, "fraud/scorer/model.bin")
    assert (own.status, own.body) == (200, b"fraud/scorer/model.bin")
    assert s3.request(TEAM_FRAUD, "HEAD", MODELS, "fraud/scorer/model.bin").status == 200
    listed = s3.request(TEAM_FRAUD, "GET", MODELS, query={"list-type": "2", "prefix": "fraud/"})
    assert listed.status == 200 and b"<Key>fraud/scorer/model.bin</Key>" in listed.body
    assert b"credit/" not in listed.body and b"fraud-lookalike/" not in listed.body
    denied = {
        "read credit/": s3.request(TEAM_FRAUD, "GET", MODELS, "credit/risk/model.bin"),
        "read a prefix that only starts alike": s3.request(TEAM_FRAUD, "GET", MODELS, "fraud-lookalike/model.bin"),
        "list credit/": s3.request(TEAM_FRAUD, "GET", MODELS, query={"list-type": "2", "prefix": "credit/"}),
        "list the whole bucket": s3.request(TEAM_FRAUD, "GET", MODELS, query={"list-type": "2"}),
        "write its own prefix": s3.request(TEAM_FRAUD, "PUT", MODELS, "fraud/scorer/model.bin", b"replaced"),
        "write a new key in its own prefix": s3.request(TEAM_FRAUD, "PUT", MODELS, "fraud/new.bin", b"new"),
        "write credit/": s3.request(TEAM_FRAUD, "PUT", MODELS, "credit/risk/model.bin", b"replaced"),
        "delete in its own prefix": s3.request(TEAM_FRAUD, "DELETE", MODELS, "fraud/scorer/model.bin"),
        "read the backups bucket": s3.request(TEAM_FRAUD, "GET", BACKUPS, query={"list-type": "2"}),
        "the backups identity reading models": s3.request(BACKUPS_RW, "GET", MODELS, "fraud/scorer/model.bin"),
        "the backups identity writing models": s3.request(BACKUPS_RW, "PUT", MODELS, "fraud/x.bin", b"x"),
    }
    assert {what: (r.status, r.error_code) for what, r in denied.items()} == \
        {what: (403, "AccessDenied") for what in denied}
    assert s3.objects(MODELS) == {"fraud/scorer/model.bin": 22, "credit/risk/model.bin": 21,
                                  "fraud-lookalike/model.bin": 25}
    assert s3.request(ADMIN, "GET", MODELS, "fraud/scorer/model.bin").body == b"fraud/scorer/model.bin"


def test_the_store_speaks_https_only_with_the_planned_certificate(s3):
    """The filer's planned TLS arguments (ObjectStore.owned_values) make the real server's S3 port HTTPS only: a
    plain request gets no S3 answer, and a client that does not trust the platform CA does not connect."""
    plain = http.client.HTTPConnection("localhost", s3.port, timeout=30)
    try:
        plain.request("GET", f"/{MODELS}")
        answer = plain.getresponse()
        assert (answer.status, b"HTTP request to an HTTPS server" in answer.read()) == (400, True)
    finally:
        plain.close()
    untrusting = http.client.HTTPSConnection("localhost", s3.port, timeout=30, context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusting.request("GET", f"/{MODELS}")
    untrusting.close()
    assert s3.request(TEAM_FRAUD, "GET", MODELS, query={"list-type": "2", "prefix": "fraud/"}).status == 200


# --- the restore drill -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drill_tools() -> tuple[Path, pwd.struct_passwd | None]:
    """Barman Cloud's commands and PostgreSQL's (absent: skip, before the S3 server starts), and the account to
    run the server as."""
    barman = barman_cloud_bin()
    user = postgres_account()
    if user is None:
        return barman, None
    probe = subprocess.run([str(barman / "barman-cloud-wal-archive"), "--version"], capture_output=True,
                           text=True, user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/")
    if probe.returncode != 0:
        pytest.fail(f"{barman}/barman-cloud-wal-archive does not run as `postgres`, the account PostgreSQL's "
                    f"archive command runs as: {probe.stderr.strip()[-500:]}\nIts environment must be made with "
                    "a Python that account can run (not one under /root): see .ci/run")
    return barman, user


def test_a_cluster_comes_back_from_the_bucket_with_every_row_up_to_its_recovery_target(drill_tools, s3):
    barman, user = drill_tools
    started = time.monotonic()
    # Not under pytest's temp dir: that is private to the account running the tests, and the server may not be.
    with tempfile.TemporaryDirectory(prefix="plinth-drill-") as scratch:
        run = Path(scratch)
        if user:
            os.chown(run, user.pw_uid, user.pw_gid)
        # The store's CA where the server's account can read it: Barman Cloud's boto3 trusts AWS_CA_BUNDLE, as
        # the plugin's ObjectStore `endpointCA` makes it in the cluster.
        ca = run / "object-store-ca.crt"
        shutil.copy(s3.ca, ca)
        ca.chmod(0o644)
        env = {"PATH": f"{barman}:{os.environ['PATH']}", "HOME": str(run), "LC_ALL": "C.UTF-8",
               "TZ": "UTC", "AWS_CA_BUNDLE": str(ca), **BACKUPS_RW.aws_env()}
        pg = Postgres(run / "data", run, user, env)
        try:
            timings = drill(s3, pg, barman)
        finally:
            pg.stop()
    stored = s3.objects(BACKUPS, f"{PREFIX}/{NAMESPACE}/")
    print(f"\n[drill] total {time.monotonic() - started:.1f}s; " +
          ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) +
          f"; bucket: {len(stored)} objects, {sum(stored.values())} bytes (base backup " +
          f"{sum(size for key, size in stored.items() if '/base/' in key)})")
    # Barman's layout under the destination, which CloudNativePG's recovery reads: <server>/base/<backup id>/
    # (backup.info, data.tar) and <server>/wals/<timeline+log>/<segments>.
    prefix = f"{PREFIX}/{NAMESPACE}/{CLUSTER}/"
    assert all(key.startswith(prefix) for key in stored), sorted(stored)
    assert {key[len(prefix):].split("/")[0] for key in stored} == {"base", "wals"}
    assert any(key.endswith("/backup.info") for key in stored) and any(key.endswith("/data.tar") for key in stored)


def drill(s3: S3Server, pg: Postgres, barman: Path) -> dict[str, float]:
    endpoint = ["--endpoint-url", s3.endpoint]
    wal_archive = f"{barman}/barman-cloud-wal-archive --endpoint-url {s3.endpoint} {DESTINATION} {CLUSTER} %p"
    pg.command("initdb", "-D", pg.data, "-U", "postgres", "--auth=trust", "--no-instructions")
    with (pg.data / "postgresql.conf").open("a") as conf:
        conf.write(f"listen_addresses = ''\nunix_socket_directories = '{pg.run}'\nwal_level = replica\n"
                   f"archive_mode = on\narchive_command = '{wal_archive}'\nfsync = off\n")
    pg.start()
    pg.sql("CREATE TABLE drill (id int PRIMARY KEY, phase text NOT NULL, payload text NOT NULL)")
    pg.sql("INSERT INTO drill SELECT i, 'before-base', md5(i::text) FROM generate_series(1, 5000) i")

    t = time.monotonic()
    pg.command(barman / "barman-cloud-backup", *endpoint, "--immediate-checkpoint", "-h", pg.run, "-p", pg.port,
               "-U", "postgres", DESTINATION, CLUSTER, timeout=300)
    timings = {"base backup": time.monotonic() - t}
    backups = pg.command(barman / "barman-cloud-backup-list", *endpoint, DESTINATION, CLUSTER).stdout
    assert len([line for line in backups.splitlines() if line.strip() and not line.startswith("Backup ID")]) == 1

    # After the base backup: new rows, changed rows, deleted rows -- only the WAL archive holds them.
    pg.sql("INSERT INTO drill SELECT i, 'after-base', md5(i::text) FROM generate_series(5001, 8000) i")
    pg.sql("UPDATE drill SET phase = 'updated-after-base' WHERE id % 7 = 0")
    pg.sql("DELETE FROM drill WHERE id % 11 = 0")
    expected = pg.sql("SELECT id, phase, payload FROM drill ORDER BY id")
    pg.sql("SELECT pg_create_restore_point('drill')")
    # Past the recovery target: archived as well, and must not come back.
    pg.sql("INSERT INTO drill VALUES (100000, 'after-target', 'x')")
    last = pg.sql("SELECT pg_walfile_name(pg_switch_wal())")
    t = time.monotonic()
    while pg.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < last:
        if time.monotonic() - t > ARCHIVE_SECONDS:
            pytest.fail(f"WAL {last} not archived within {ARCHIVE_SECONDS}s: "
                        f"{pg.sql('SELECT * FROM pg_stat_archiver')}\n{pg.log_tail()}")
        time.sleep(0.2)
    timings["WAL archived"] = time.monotonic() - t
    assert len(expected.splitlines()) == 8000 - 8000 // 11

    pg.stop()
    shutil.rmtree(pg.data)

    t = time.monotonic()
    pg.command(barman / "barman-cloud-restore", *endpoint, DESTINATION, CLUSTER, "latest", pg.data, timeout=300)
    timings["restore"] = time.monotonic() - t
    wal_restore = f"{barman}/barman-cloud-wal-restore --endpoint-url {s3.endpoint} {DESTINATION} {CLUSTER} %f %p"
    with (pg.data / "postgresql.conf").open("a") as conf:
        # The restored server is a new one: it must not archive into the cluster's history.
        conf.write(f"archive_mode = off\nrestore_command = '{wal_restore}'\nrecovery_target_name = 'drill'\n"
                   "recovery_target_action = 'promote'\n")
    (pg.data / "recovery.signal").touch()
    if pg.user:
        os.chown(pg.data / "recovery.signal", pg.user.pw_uid, pg.user.pw_gid)
    pg.data.chmod(0o700)
    t = time.monotonic()
    pg.start()
    while pg.sql("SELECT pg_is_in_recovery()") != "f":
        if time.monotonic() - t > ARCHIVE_SECONDS:
            pytest.fail(f"still in recovery after {ARCHIVE_SECONDS}s:\n{pg.log_tail()}")
        time.sleep(0.2)
    timings["WAL replay"] = time.monotonic() - t

    restored = pg.sql("SELECT id, phase, payload FROM drill ORDER BY id")
    assert restored == expected  # before and after the base backup, with the later updates and deletions
    assert 'recovery stopping at restore point "drill"' in pg.log.read_text(errors="replace")
    assert pg.sql("SELECT count(*) FROM drill WHERE phase = 'after-target'") == "0"
    assert pg.sql("SELECT timeline_id FROM pg_control_checkpoint()") == "2"  # promoted: a new timeline
    return timings

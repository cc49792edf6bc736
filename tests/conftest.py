pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.faults",
    "tests.fixtures.kafka",
    "tests.fixtures.kafka_cluster",
    "tests.fixtures.secure_kafka",
    "tests.fixtures.tls",
    "tests.fixtures.chromium",  # after kafka, whose REPO_ROOT it imports
]

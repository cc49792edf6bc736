pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.kafka",
    "tests.fixtures.secure_kafka",
    "tests.fixtures.tls",
    "tests.fixtures.chromium",  # after kafka, whose REPO_ROOT it imports
]

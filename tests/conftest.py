pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.kafka",
    "tests.fixtures.secure_kafka",
    "tests.fixtures.tls",
]

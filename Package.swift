// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Drover",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ZooKeeper", targets: ["ZooKeeper"]),
        .library(name: "ZKRecipes", targets: ["ZKRecipes"]),
        .library(name: "ZooKeeperTLS", targets: ["ZooKeeperTLS"]),
        .library(name: "ZooKeeperServers", targets: ["ZooKeeperServers"]),
        .library(name: "ZooKeeperTesting", targets: ["ZooKeeperTesting"]),
        .library(name: "DroverProtocol", targets: ["DroverProtocol"]),
        .library(name: "DroverClient", targets: ["DroverClient"]),
        .library(name: "DroverManager", targets: ["DroverManager"]),
        .library(name: "DroverExecutor", targets: ["DroverExecutor"]),
        .executable(name: "drover", targets: ["drover"]),
        .executable(name: "drover-bench", targets: ["drover-bench"]),
        .executable(name: "drover-chaos", targets: ["drover-chaos"]),
        .executable(name: "drover-sim", targets: ["drover-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Counters and histograms in the libraries; Prometheus exposition in the daemons (--metrics).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // Executors serve task output over HTTP; `drover logs` reads it with NIO's HTTP client codec.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        // TLS to ZooKeeper through a loopback bridge (the C client has none).
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // A client certificate's subject, which ZooKeeper names the process by (x509 roles).
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        // The placement simulator's event queue (already built for swift-nio's Deque).
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        // The only module that sees the C API. Debian: apt-get install libzookeeper-mt-dev
        .systemLibrary(
            name: "CZooKeeper",
            providers: [.apt(["libzookeeper-mt-dev"])]
        ),
        .target(
            name: "ZooKeeper",
            dependencies: [
                "CZooKeeper",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "ZKRecipes",
            dependencies: [
                "ZooKeeper",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // TLS to ZooKeeper's secureClientPort for the plain-TCP C client: a loopback bridge.
        .target(
            name: "ZooKeeperTLS",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The job model and the znode documents: pure Swift, no ZooKeeper.
        .target(name: "DroverProtocol"),
        // Job records as every reader reads them (the client and a starting leader share it).
        .target(name: "DroverStore", dependencies: ["DroverProtocol", "ZooKeeper"]),
        // The client library: submit, status, list, call, watch, stop, cancel, drain. An
        // application that only submits jobs links this, not the manager or the executor.
        .target(
            name: "DroverClient",
            dependencies: ["DroverProtocol", "DroverStore", "ZooKeeper", "ZKRecipes", .product(name: "Logging", package: "swift-log")]
        ),
        // The manager daemon: leader election, and the leader (decisions in LeaderState, I/O in LeaderLoop).
        .target(
            name: "DroverManager",
            dependencies: [
                "DroverProtocol", "DroverStore", "ZooKeeper", "ZKRecipes",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The executor library: programs embed it with their own methods.
        .target(
            name: "DroverExecutor",
            dependencies: [
                "DroverProtocol", "DroverStore", "ZooKeeper", "ZKRecipes",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The stock executor's `shell` method: commands in their own process group, output to files.
        .target(
            name: "DroverShell",
            dependencies: ["DroverExecutor", "DroverProtocol", "CSpawn"]
        ),
        // glibc's posix_spawn extensions, which need _GNU_SOURCE (commands must not inherit the
        // executor's sockets and files).
        .target(name: "CSpawn"),
        // Task output over HTTP: the executor's server and the client `drover logs` uses.
        .target(
            name: "DroverOutput",
            dependencies: [
                "DroverShell", "DroverProtocol",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                "ZooKeeperTLS",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The HTTP API every manager can serve (docs/openapi.yaml).
        .target(
            name: "DroverAPI",
            dependencies: [
                "DroverClient", "DroverOutput", "DroverProtocol", "DroverShell", "DroverStore", "ZooKeeper", "ZKRecipes",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // `/metrics` for Prometheus: the daemons' metrics system and the HTTP endpoint serving it.
        .target(
            name: "DroverMetrics",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Real ZooKeeper servers on this machine, through Deploy/zk-ensemble, and background
        // processes: `drover dev`, tests, benchmarks and chaos runs start them.
        .target(
            name: "ZooKeeperServers",
            dependencies: ["ZooKeeper", "ZooKeeperTLS", "CSpawn"]
        ),
        // The test kit: a shared server per test process, chroots, Drover's executables.
        .target(
            name: "ZooKeeperTesting",
            dependencies: ["ZooKeeper", "ZooKeeperServers"]
        ),
        .executableTarget(
            name: "drover",
            dependencies: [
                "ZooKeeper", "ZKRecipes", "ZooKeeperTLS", "DroverClient", "DroverManager", "DroverExecutor", "DroverProtocol", "DroverShell", "DroverOutput", "DroverStore", "DroverMetrics", "DroverAPI",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                // `drover dev` runs a local cluster on real servers.
                "ZooKeeperServers",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "drover-bench",
            dependencies: [
                "ZooKeeper", "ZKRecipes", "DroverClient", "DroverManager", "DroverExecutor", "DroverMetrics", "DroverProtocol", "DroverStore",
                "DroverSimulation", "DroverChaos", "ZooKeeperServers", "ZooKeeperTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Placement policies simulated without ZooKeeper (issue 20, docs/PLACEMENT.md; pure).
        .target(
            name: "DroverSimulation",
            dependencies: ["DroverProtocol", .product(name: "HeapModule", package: "swift-collections")]
        ),
        .executableTarget(
            name: "drover-sim",
            dependencies: ["DroverSimulation", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The chaos checker: ledgers, audits and job records in, a verdict out (pure).
        .target(name: "DroverChaos", dependencies: ["DroverProtocol"]),
        .executableTarget(
            name: "drover-chaos",
            dependencies: [
                "DroverChaos", "DroverClient", "DroverProtocol", "DroverStore", "ZooKeeper", "ZKRecipes", "ZooKeeperServers", "ZooKeeperTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "DroverChaosTests",
            dependencies: ["DroverChaos", "DroverProtocol"]
        ),
        .testTarget(
            name: "ZooKeeperTests",
            dependencies: ["ZooKeeper", "ZooKeeperServers", "ZooKeeperTesting", "ZooKeeperTLS"]
        ),
        .testTarget(
            name: "DroverProtocolTests",
            dependencies: ["DroverProtocol", "DroverSimulation"]
        ),
        .testTarget(
            name: "DroverShellTests",
            dependencies: ["DroverShell", "DroverExecutor", "DroverProtocol", "DroverOutput", "ZooKeeperTesting"]
        ),
        .testTarget(
            name: "DroverCoreTests",
            dependencies: [
                "DroverClient", "DroverManager", "DroverExecutor", "DroverStore", "DroverProtocol", "ZooKeeper", "ZKRecipes", "ZooKeeperServers",
                "ZooKeeperTesting", "DroverAPI",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .testTarget(
            name: "ZKRecipesTests",
            dependencies: ["ZooKeeper", "ZKRecipes", "ZooKeeperServers", "ZooKeeperTesting"]
        ),
    ]
)

// Shared settings for every Swift target: Swift 6 mode (strict concurrency) everywhere.
for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.swiftLanguageMode(.v6))
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    target.swiftSettings = settings
}

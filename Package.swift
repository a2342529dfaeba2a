// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Drover",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ZooKeeper", targets: ["ZooKeeper"]),
        .library(name: "ZKRecipes", targets: ["ZKRecipes"]),
        .library(name: "ZooKeeperTesting", targets: ["ZooKeeperTesting"]),
        .library(name: "DroverProtocol", targets: ["DroverProtocol"]),
        .executable(name: "drover", targets: ["drover"]),
        .executable(name: "drover-bench", targets: ["drover-bench"]),
        .executable(name: "drover-chaos", targets: ["drover-chaos"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // Executors serve task output over HTTP; `drover logs` reads it with NIO's HTTP client codec.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
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
            ]
        ),
        .target(
            name: "ZKRecipes",
            dependencies: [
                "ZooKeeper",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The job model and the znode documents: pure Swift, no ZooKeeper.
        .target(name: "DroverProtocol"),
        // The scheduler: clients submit, the leading manager places, executors run.
        .target(
            name: "DroverCore",
            dependencies: [
                "DroverProtocol", "ZooKeeper", "ZKRecipes",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The stock executor's `shell` method: commands in their own process group, output to files.
        .target(
            name: "DroverShell",
            dependencies: ["DroverCore", "DroverProtocol", "CSpawn"]
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
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "ZooKeeperTesting",
            dependencies: ["ZooKeeper"]
        ),
        .executableTarget(
            name: "drover",
            dependencies: [
                "ZooKeeper", "ZKRecipes", "DroverCore", "DroverProtocol", "DroverShell", "DroverOutput",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                // `drover dev` runs a local cluster with the same kit the tests use.
                "ZooKeeperTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "drover-bench",
            dependencies: [
                "ZooKeeper", "ZKRecipes", "DroverCore", "DroverProtocol", "ZooKeeperTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The chaos checker: ledgers, audits and job records in, a verdict out (pure).
        .target(name: "DroverChaos", dependencies: ["DroverProtocol"]),
        .executableTarget(
            name: "drover-chaos",
            dependencies: [
                "DroverChaos", "DroverCore", "DroverProtocol", "ZooKeeper", "ZKRecipes", "ZooKeeperTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "DroverChaosTests",
            dependencies: ["DroverChaos", "DroverProtocol"]
        ),
        .testTarget(
            name: "ZooKeeperTests",
            dependencies: ["ZooKeeper", "ZooKeeperTesting"]
        ),
        .testTarget(
            name: "DroverProtocolTests",
            dependencies: ["DroverProtocol"]
        ),
        .testTarget(
            name: "DroverShellTests",
            dependencies: ["DroverShell", "DroverCore", "DroverProtocol", "DroverOutput"]
        ),
        .testTarget(
            name: "DroverCoreTests",
            dependencies: ["DroverCore", "DroverProtocol", "ZooKeeper", "ZKRecipes", "ZooKeeperTesting"]
        ),
        .testTarget(
            name: "ZKRecipesTests",
            dependencies: ["ZooKeeper", "ZKRecipes", "ZooKeeperTesting"]
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

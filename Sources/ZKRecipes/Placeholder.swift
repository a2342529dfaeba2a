import ZooKeeper

print("drover: the command-line interface is not built yet; see README.md")

from toonfactory.cli import main

main()

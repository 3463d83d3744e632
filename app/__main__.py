from masnn.cli import main

main()

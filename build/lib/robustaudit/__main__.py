from robustaudit.cli import main

main()

from pipeline.cli import run

if __name__ == "__main__":  # guarded: worker processes import the main module
    run()

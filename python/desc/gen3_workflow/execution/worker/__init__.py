"""What runs beyond parsl on workers, with the standard library and psutil
only: process mode's bash app (`~.bash_app`), the job supervisor that holds
a job to its memory and walltime (`~.supervise`), and parsl's Work Queue
task script started without importing all of parsl (`~.wq_task`).

May import only the job_io room and the package's constants.  Its ``__init__`` imports nothing.
"""

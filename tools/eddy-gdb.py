# SPDX-License-Identifier: MIT
# gdb commands for programs using eddy, live or from a core dump:
#   eddy tasks     every task of every loop running on a thread: id, name, state
#   eddy bt ID     the backtrace of a suspended task, from its saved context
# Load with `source eddy-gdb.py` (installed beside the library; gdb's
# auto-load picks it up from its auto-load directory). Needs libeddy's debug
# information (its types and eddy__thread_loop). The loops found are those
# a thread is running when the program stopped (each thread's
# eddy__thread_loop); docs/debugging.md.
import gdb

STATES = {0: "ready, not started", 1: "ready", 2: "waiting", 3: "done, not yet joined"}
WAITS = {0: "waiting", 1: "sleeping", 2: "waiting on an op", 3: "awaiting a future or task",
         4: "waiting for a group", 5: "gathering futures",
         6: "waiting on a lock, event, condition, semaphore, barrier or queue"}


def _loops():
    """(thread, loop) for each thread running an eddy loop."""
    found = []
    selected = gdb.selected_thread()
    for thread in gdb.selected_inferior().threads():
        thread.switch()
        try:
            loop = gdb.parse_and_eval("eddy__thread_loop")
        except gdb.error:
            continue
        if int(loop) != 0:
            found.append((thread, loop))
    if selected is not None:
        selected.switch()
    return found


def _tasks(loop):
    task_type = gdb.lookup_type("struct eddy_task")
    offset = next(f.bitpos // 8 for f in task_type.fields() if f.name == "all_link")
    head = loop["tasks"].address
    node = loop["tasks"]["next"]
    while int(node) != int(head):
        addr = int(node) - offset
        yield gdb.Value(addr).cast(task_type.pointer()).dereference()
        node = node["next"]


def _name(task):
    if int(task["name"]) != 0:
        return task["name"].string()
    block = gdb.block_for_pc(int(task["fn"]))
    fn = block.function if block is not None else None
    return fn.name if fn is not None else "task"


def _state(loop, task):
    state = int(task["state"])
    if state == 1 and int(loop["current"]) == int(task.address):
        return "running"
    if state == 2:
        return WAITS.get(int(task["wait_kind"]), "waiting")
    return STATES.get(state, "?")


def _frames(task):
    """(pc) of a suspended task, walked by frame pointer within its stack."""
    stack = task["stack"]
    if int(stack) == 0:
        return []
    lo = int(stack["lo"])
    hi = lo + int(stack["size"])
    sp = int(task["fiber"]["sp"])
    arch = gdb.selected_frame().architecture().name()
    fp_slot, pc_slot = (10, 11) if "aarch64" in arch else (5, 6)
    inferior = gdb.selected_inferior()

    def word(addr):
        return int.from_bytes(bytes(inferior.read_memory(addr, 8)), "little")

    if not lo <= sp < hi:
        return []
    pcs = [word(sp + 8 * pc_slot)]
    fp = word(sp + 8 * fp_slot)
    while len(pcs) < 64 and lo <= fp and fp + 16 <= hi and fp % 8 == 0:
        ret = word(fp + 8)
        if ret == 0:
            break
        pcs.append(ret)
        nxt = word(fp)
        if nxt <= fp:
            break
        fp = nxt
    return pcs


class EddyCommand(gdb.Command):
    """eddy tasks | eddy bt ID: the tasks of the eddy loops in this program."""

    def __init__(self):
        super().__init__("eddy", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


class EddyTasks(gdb.Command):
    """Lists every task of every loop a thread is running: id, name, state."""

    def __init__(self):
        super().__init__("eddy tasks", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        loops = _loops()
        if not loops:
            print("no thread is running an eddy loop")
        for thread, loop in loops:
            print("thread %d: loop %s (%s)" % (thread.num, loop,
                  loop["backend"]["ops"]["name"].string()))
            for task in _tasks(loop):
                print("  task %d \"%s\": %s" % (int(task["id"]), _name(task), _state(loop, task)))


class EddyBt(gdb.Command):
    """eddy bt ID: the backtrace of task ID, walked from its saved context."""

    def __init__(self):
        super().__init__("eddy bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        try:
            want = int(arg)
        except ValueError:
            raise gdb.GdbError("usage: eddy bt ID")
        for _, loop in _loops():
            for task in _tasks(loop):
                if int(task["id"]) != want:
                    continue
                if int(loop["current"]) == int(task.address):
                    print("task %d is running: its frames are the thread's (bt)" % want)
                    return
                for i, pc in enumerate(_frames(task)):
                    look = pc - 1 if i else pc
                    sal = gdb.find_pc_line(look)
                    block = gdb.block_for_pc(look)
                    fn = block.function.name if block is not None and block.function else "?"
                    where = ""
                    if sal.symtab is not None:
                        where = " at %s:%d" % (sal.symtab.filename, sal.line)
                    print("#%d 0x%x %s%s" % (i, pc, fn, where))
                return
        raise gdb.GdbError("no task %d in a running loop" % want)


EddyCommand()
EddyTasks()
EddyBt()

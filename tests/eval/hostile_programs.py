"""Hostile programs, one per attack and language, written whole.

``hostile(language, attack, outside, port)`` gives the keyword arguments of
``conftest.inline_sample``: the prompt holds the program (Go keeps its package clause and
imports in ``test_setup``; Rust's attack is a test). ``@OUTSIDE@`` stands for a
world-writable host folder and ``@PORT@`` for a host port that listens.
"""

from __future__ import annotations

ATTACKS = ("fork_bomb", "memory_bomb", "infinite_loop", "huge_output", "write_outside",
           "network", "kill_parent")  # fmt: skip
HARMLESS = "harmless"  # not an attack: a program that passes, judged after the battery

PYTHON = {
    "fork_bomb": "import os\nwhile True:\n    os.fork()\n",
    "memory_bomb": "blocks = []\nwhile True:\n    blocks.append(bytearray(100 << 20))\n",
    "infinite_loop": "while True:\n    pass\n",
    HARMLESS: "assert 1 + 1 == 2\n",
    "huge_output": "while True:\n    print('x' * 1000)\n",
    "write_outside": "open('@OUTSIDE@/pwned-python', 'w').write('pwned')\n",
    "network": "import socket\nsocket.create_connection(('127.0.0.1', @PORT@), timeout=1)\n",
    "kill_parent": "import os, signal, time\nfor pid in (os.getppid(), -1):\n    try:\n"
    "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\ntime.sleep(1)\n",
}

CPP = {
    "fork_bomb": "int main() { while (true) fork(); }",
    "memory_bomb": "int main() { std::vector<char*> v; while (true) { char* p = new char[100 << 20];"
    " memset(p, 1, 100 << 20); v.push_back(p); } }",
    "infinite_loop": "int main() { volatile long x = 0; while (true) x++; }",
    HARMLESS: "int main() { return 1 + 1 == 2 ? 0 : 1; }",
    "huge_output": 'int main() { while (true) puts("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"); }',
    "write_outside": 'int main() { FILE* f = fopen("@OUTSIDE@/pwned-cpp", "w");'
    ' if (!f) { perror("fopen"); return 1; } fputs("pwned", f); }',
    "network": "int main() { int s = socket(AF_INET, SOCK_STREAM, 0); sockaddr_in a{};"
    " a.sin_family = AF_INET; a.sin_port = htons(@PORT@);"
    ' inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);'
    ' if (connect(s, (sockaddr*)&a, sizeof a) != 0) { perror("connect"); return 1; } }',
    "kill_parent": "int main() { kill(getppid(), SIGKILL); kill(-1, SIGKILL); sleep(1); }",
}
_CPP_HEADERS = ("unistd.h", "signal.h", "sys/socket.h", "netinet/in.h", "arpa/inet.h", "fstream",
                "cstring", "vector", "cstdio")  # fmt: skip

JAVA = {
    "fork_bomb": 'while (true) { new ProcessBuilder("sleep", "100").start();'
    " new Thread(() -> { try { Thread.sleep(100000); } catch (Exception e) { } }).start(); }",
    "memory_bomb": "java.util.List<long[]> l = new java.util.ArrayList<>();"
    " while (true) l.add(new long[10_000_000]);",
    "infinite_loop": "long x = 0; while (true) x++;",
    HARMLESS: "if (1 + 1 != 2) throw new AssertionError();",
    "huge_output": 'while (true) System.out.println("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");',
    "write_outside": 'java.nio.file.Files.writeString(java.nio.file.Path.of("@OUTSIDE@/pwned-java"),'
    ' "pwned");',
    "network": 'new java.net.Socket("127.0.0.1", @PORT@).close();',
    "kill_parent": "ProcessHandle.current().parent().ifPresent(ProcessHandle::destroyForcibly);"
    " ProcessHandle.allProcesses().filter(p -> p.pid() != ProcessHandle.current().pid())"
    ".forEach(ProcessHandle::destroyForcibly); Thread.sleep(1000);",
}

JS = {
    "fork_bomb": "const cp = require('child_process')\nfor (;;) { cp.spawn('sleep', ['100']) }\n",
    "memory_bomb": "const a = []\nfor (;;) { a.push(Buffer.alloc(100 * 1024 * 1024, 1)) }\n",
    "infinite_loop": "for (;;) {}\n",
    HARMLESS: "if (1 + 1 !== 2) { throw new Error('arithmetic') }\n",
    "huge_output": "for (;;) { console.log('x'.repeat(1000)) }\n",
    "write_outside": "require('fs').writeFileSync('@OUTSIDE@/pwned-js', 'pwned')\n",
    "network": "require('net').connect(@PORT@, '127.0.0.1', () => process.exit(0))\n",
    "kill_parent": "for (const pid of [process.ppid, -1]) { try { process.kill(pid, 'SIGKILL') }"
    " catch (e) {} }\nsetTimeout(() => {}, 1000)\n",
}

GO = {  # attack -> (imports, body of a test function)
    "fork_bomb": (["os/exec"], 'for {\n\t\texec.Command("sleep", "100").Start()\n\t}'),
    "memory_bomb": ([], "var s [][]byte\n\tfor {\n\t\tb := make([]byte, 100<<20)\n"
                    "\t\tfor i := range b {\n\t\t\tb[i] = 1\n\t\t}\n\t\ts = append(s, b)\n\t}"),
    "infinite_loop": ([], "x := 0\n\tfor {\n\t\tx++\n\t}"),
    HARMLESS: ([], 'if 1+1 != 2 {\n\t\tt.Fatal("arithmetic")\n\t}'),
    "huge_output": (["fmt"], 'for {\n\t\tfmt.Println("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")\n\t}'),
    "write_outside": (["os"], 'if err := os.WriteFile("@OUTSIDE@/pwned-go", []byte("pwned"), 0o644);'
                      " err != nil {\n\t\tpanic(err)\n\t}"),
    "network": (["net"], 'c, err := net.Dial("tcp", "127.0.0.1:@PORT@")\n\tif err != nil {\n'
                "\t\tpanic(err)\n\t}\n\tc.Close()"),
    "kill_parent": (["os", "syscall", "time"], "syscall.Kill(os.Getppid(), syscall.SIGKILL)\n"
                    "\tsyscall.Kill(-1, syscall.SIGKILL)\n\ttime.Sleep(time.Second)"),
}  # fmt: skip

RUST = {
    "fork_bomb": 'loop { let _ = std::process::Command::new("sleep").arg("100").spawn(); }',
    "memory_bomb": "let mut v = Vec::new(); loop { v.push(vec![1u8; 256 << 20]); }",
    "infinite_loop": "let mut x: u64 = 0; loop { x = std::hint::black_box(x.wrapping_add(1)); }",
    HARMLESS: "assert_eq!(1 + 1, 2);",
    "huge_output": 'loop { println!("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"); }',
    "write_outside": 'std::fs::write("@OUTSIDE@/pwned-rust", "pwned").unwrap();',
    "network": 'std::net::TcpStream::connect("127.0.0.1:@PORT@").unwrap();',
    "kill_parent": "let ppid = std::os::unix::process::parent_id().to_string();\n"
    '        let _ = std::process::Command::new("kill").args(["-9", &ppid]).status();\n'
    '        let _ = std::process::Command::new("kill").args(["-9", "--", "-1"]).status();\n'
    "        std::thread::sleep(std::time::Duration::from_secs(1));",
}


def _program(language: str, attack: str) -> dict:
    if language == "python":
        return {"prompt": PYTHON[attack]}
    if language == "cpp":
        headers = "".join(f"#include <{h}>\n" for h in _CPP_HEADERS)
        return {"prompt": headers + CPP[attack] + "\n"}
    if language == "java":
        main = "    public static void main(String[] args) throws Exception {\n        "
        return {"prompt": "public class Main {\n" + main + JAVA[attack] + "\n    }\n}\n"}
    if language == "javascript":
        return {"prompt": JS[attack]}
    if language == "go":
        imports, body = GO[attack]
        setup = (
            'package main\n\nimport (\n\t"testing"\n'
            + "".join(f'\t"{p}"\n' for p in imports)
            + ")\n"
        )
        return {
            "prompt": "func TestAttack(t *testing.T) {\n\t" + body + "\n}\n",
            "test_setup": setup,
        }
    if language == "rust":
        test = "#[cfg(test)]\nmod tests {\n    #[test]\n    fn attack() {\n        "
        return {"prompt": test + RUST[attack] + "\n    }\n}\n"}
    raise ValueError(language)


def hostile(language: str, attack: str, outside: str, port: int) -> dict:
    program = _program(language, attack)
    program["prompt"] = program["prompt"].replace("@OUTSIDE@", outside).replace("@PORT@", str(port))
    return program

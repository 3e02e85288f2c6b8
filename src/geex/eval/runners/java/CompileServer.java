import java.io.BufferedReader;
import java.io.File;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.util.List;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;

/**
 * Compiles Main.java in each folder named on standard input (one absolute path per line) with
 * the JDK's compiler in this one warm JVM, writing the classes next to the source as javac
 * does. Answers each line with "OK <n>" or "ERR <n>" and then n bytes of compiler messages.
 */
public class CompileServer {
    public static void main(String[] args) throws Exception {
        JavaCompiler compiler = ToolProvider.getSystemJavaCompiler();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, "UTF-8");
        String folder;
        while ((folder = in.readLine()) != null) {
            StringWriter messages = new StringWriter();
            boolean ok;
            try (StandardJavaFileManager files =
                    compiler.getStandardFileManager(null, null, StandardCharsets.UTF_8)) {
                Iterable<? extends JavaFileObject> units =
                        files.getJavaFileObjects(new File(folder, "Main.java"));
                List<String> options = List.of("-d", folder, "-cp", folder, "-encoding", "UTF-8");
                ok = compiler.getTask(messages, files, null, options, null, units).call();
            } catch (Throwable error) {
                ok = false;
                messages.write(error.toString());
            }
            byte[] text = messages.toString().getBytes(StandardCharsets.UTF_8);
            out.print((ok ? "OK " : "ERR ") + text.length + "\n");
            out.write(text);
            out.flush();
        }
    }
}

using System.Reflection;

namespace Xmem.TestChild;

/// <summary>Marks a static method <c>int Name(ChildContext)</c> as the child command <see cref="Name"/>; the return
/// value is the process's exit code (0 = success).</summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false, Inherited = false)]
internal sealed class ChildCommandAttribute(string name, string usage = "") : Attribute
{
    /// <summary>The command word on the command line.</summary>
    public string Name { get; } = name;

    /// <summary>The arguments, for <c>list</c>.</summary>
    public string Usage { get; } = usage;
}

/// <summary>Finds every <see cref="ChildCommandAttribute"/> method of an assembly.</summary>
internal static class CommandRegistry
{
    internal static Dictionary<string, (ChildCommandAttribute Info, MethodInfo Method)> Discover(Assembly assembly)
    {
        var found = new Dictionary<string, (ChildCommandAttribute, MethodInfo)>(StringComparer.Ordinal);
        const BindingFlags Flags = BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly;
        foreach (Type type in assembly.GetTypes())
        {
            foreach (MethodInfo method in type.GetMethods(Flags))
            {
                ChildCommandAttribute? info = method.GetCustomAttribute<ChildCommandAttribute>();
                if (info is null)
                {
                    continue;
                }

                ParameterInfo[] ps = method.GetParameters();
                if (method.ReturnType != typeof(int) || ps.Length != 1 || ps[0].ParameterType != typeof(ChildContext))
                {
                    throw new InvalidOperationException($"child command '{info.Name}' ({type.FullName}.{method.Name}) must be `static int {method.Name}(ChildContext)`.");
                }

                if (!found.TryAdd(info.Name, (info, method)))
                {
                    throw new InvalidOperationException($"child command '{info.Name}' is defined twice ({type.FullName}.{method.Name} and {found[info.Name].Item2.DeclaringType?.FullName}.{found[info.Name].Item2.Name}).");
                }
            }
        }

        return found;
    }
}

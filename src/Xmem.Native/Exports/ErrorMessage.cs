using System.Runtime.CompilerServices;

namespace Xmem.Native.Exports;

/// <summary>
/// Formats an interpolated error message into the thread's buffer (<see cref="LastError.CharBuffer"/>) with no
/// allocation for literals, strings, numbers and other span-formattable values; anything else is formatted by
/// ToString, and a failure there (out of memory) only shortens the message. Too long a message is cut off.
/// </summary>
[InterpolatedStringHandler]
internal ref struct ErrorMessage
{
    private readonly char[]? _buf;
    private int _pos;

    public ErrorMessage(int literalLength, int formattedCount)
    {
        _ = literalLength;
        _ = formattedCount;
        _buf = LastError.CharBuffer();
        _pos = 0;
    }

    /// <summary>The text so far.</summary>
    internal readonly ReadOnlySpan<char> Text => _buf is null ? default : _buf.AsSpan(0, _pos);

    public void AppendLiteral(string s) => Append(s);

    public void AppendFormatted(string? s) => Append(s);

    public void AppendFormatted(ReadOnlySpan<char> s) => Append(s);

    public void AppendFormatted<T>(T value) => AppendFormatted(value, null);

    public void AppendFormatted<T>(T value, string? format)
    {
        if (_buf is null)
        {
            return;
        }

        try
        {
            if (value is ISpanFormattable)
            {
                if (((ISpanFormattable)value).TryFormat(_buf.AsSpan(_pos), out int n, format, null))
                {
                    _pos += n;
                }
                else
                {
                    _pos = _buf.Length; // does not fit: the message ends here
                }
            }
            else
            {
                Append(value?.ToString());
            }
        }
        catch (Exception)
        {
            // Out of memory while formatting one value: the message goes on without it.
        }
    }

    private void Append(ReadOnlySpan<char> s)
    {
        if (_buf is null)
        {
            return;
        }

        int n = Math.Min(s.Length, _buf.Length - _pos);
        s[..n].CopyTo(_buf.AsSpan(_pos));
        _pos += n;
    }
}

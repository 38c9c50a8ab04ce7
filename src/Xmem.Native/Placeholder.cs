namespace Xmem.Native; internal static class Placeholder { }

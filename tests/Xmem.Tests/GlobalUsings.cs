global using Xunit;
global using Xmem.Tests.Infrastructure;

// Shared memory in /dev/shm, futexes, file modes: the suite is Linux-only, as xmem is.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

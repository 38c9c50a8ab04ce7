Console.WriteLine("xmem-testchild");

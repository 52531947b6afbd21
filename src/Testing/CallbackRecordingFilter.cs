using OrleansProtocol.Wire;

namespace OrleansProtocol.Testing;

/// <summary>Records each call to an <see cref="IProtocolGrain"/> into the test host's <see cref="CallbackLog"/> as it arrives.</summary>
internal sealed class CallbackRecordingFilter(CallbackLog log) : IIncomingGrainCallFilter
{
    public async Task Invoke(IIncomingGrainCallContext context)
    {
        if (context.InterfaceMethod?.DeclaringType != typeof(IProtocolGrain))
        {
            await context.Invoke();
            return;
        }

        var request = context.Request;
        var callbacks = context.InterfaceMethod.Name switch
        {
            // As the protocol sees them: one FrameReceived per frame.
            nameof(IProtocolGrain.FramesReceived) => ((ReadOnlyMemory<byte>[])request.GetArgument(0)!)
                .Select(f => new ProtocolCallback("FrameReceived", f.ToArray(), ConnectionCloseReason.None)).ToArray(),
            nameof(IProtocolGrain.DataReceived) => [new ProtocolCallback("DataReceived", ((ReadOnlyMemory<byte>)request.GetArgument(0)!).ToArray(), ConnectionCloseReason.None)],
            nameof(IProtocolGrain.ConnectionLost) or nameof(IProtocolGrain.CloseRequested) =>
                [new ProtocolCallback(context.InterfaceMethod.Name, default, (ConnectionCloseReason)request.GetArgument(0)!)],
            var name => [new ProtocolCallback(name, default, ConnectionCloseReason.None)],
        };
        var connectionId = context.TargetId.Key.ToString()!;
        log.Add(connectionId, callbacks);
        try
        {
            await context.Invoke();
            if (context.Result is ProtocolReply { Status: ProtocolReplyStatus.Deferred } deferred)
            {
                // The grain paused reading: what it did not take never reached the protocol and comes again later.
                log.Remove(connectionId, callbacks.Skip(deferred.FramesTaken));
            }
        }
        finally
        {
            foreach (var callback in callbacks)
            {
                callback.Handled = true;
            }

            log.Changed();
        }
    }
}

// pushserver.js: a small client for spout's WS-PushServer API, served at /js/pushserver.js.
//
// The same interface as the original's bundled client (new PushServer(url), subscribe(channel, callback),
// unsubscribe(channel), disconnect()), with what the original's lacks: subscribe and unsubscribe name the
// connection's uuid, a callback keeps its `this`, and each call returns a promise of the server's answer
// (CLIENT_ACK, or the ERROR as a rejection). Outside a browser, pass a WebSocket class:
// new PushServer(url, { WebSocket }).
(function (global) {
  'use strict';

  class PushServer {
    constructor(websocketUrl, options = {}) {
      const Socket = options.WebSocket || global.WebSocket;
      this.uuid = null;
      this.subscribedChannels = [];
      this.handlers = {};
      this.waiting = [];
      this.socket = new Socket(websocketUrl);
      this.ready = new Promise((resolve, reject) => {
        this.socket.onerror = (event) => reject(new Error('WebSocket error: ' + (event && event.message)));
        this.socket.onclose = () => {
          this.uuid = null;
          reject(new Error('The connection closed.'));
          for (const pending of this.waiting.splice(0)) pending.reject(new Error('The connection closed.'));
        };
        this.socket.onmessage = (event) => {
          const json = JSON.parse(event.data);
          if (this.uuid === null) {
            if (json.messageType !== 'CLIENT_ACK' || json.message !== 'Connected') {
              reject(new Error("Couldn't connect to the server."));
              return;
            }
            this.uuid = json.data.uuid;
            resolve(this.uuid);
            return;
          }
          this.handleMessage(json);
        };
      });
    }

    subscribe(channelName, callback) {
      this.handlers[channelName] = callback;
      return this.send('SUBSCRIBE', channelName);
    }

    unsubscribe(channelName) {
      delete this.handlers[channelName];
      return this.send('UNSUBSCRIBE', channelName);
    }

    disconnect() {
      this.socket.close(1000);
    }

    send(action, channelName) {
      if (this.uuid === null) {
        return Promise.reject(new Error('The connection to the server is not established yet or has been closed.'));
      }
      return new Promise((resolve, reject) => {
        this.waiting.push({ resolve, reject });
        this.socket.send(JSON.stringify({
          messageType: 'CLIENT_ACTION',
          uuid: this.uuid,
          action,
          data: { channel: channelName },
        }));
      });
    }

    handleMessage(json) {
      if (json.messageType === 'CLIENT_ACK' || json.messageType === 'ERROR') {
        // The server answers each action in order.
        const pending = this.waiting.shift();
        if (json.messageType === 'CLIENT_ACK') {
          this.subscribedChannels = json.data.subscribedChannels;
          if (pending) pending.resolve(json.data.subscribedChannels);
        } else if (pending) {
          pending.reject(Object.assign(new Error(json.data.errorDetails), { code: json.code }));
        }
        return;
      }
      if (json.messageType !== 'CLIENT_PUSH' || !json.data || !json.data.pushMessage) return;
      this.subscribedChannels = json.data.subscribedChannels;
      const { channel, message } = json.data.pushMessage;
      const handler = this.handlers[channel];
      if (handler) handler(message, channel);
    }
  }

  global.PushServer = PushServer;
  if (typeof module !== 'undefined' && module.exports) module.exports = PushServer;
})(typeof globalThis !== 'undefined' ? globalThis : this);

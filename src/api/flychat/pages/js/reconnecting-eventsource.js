/* spout's flychat: ReconnectingEventSource (served under the name of the script flychat's page used). An
   EventSource that never gives up: the browser's own reconnects by itself after a dropped stream (sending
   Last-Event-ID), but stops for good on an error answer (a 503, a proxy's error page). Then this one opens a new
   EventSource after a growing delay, with ?lastEventId= set to the last id it saw, so the stream resumes where it
   left off. Listeners added to it stay across the EventSources it opens. */
(function (global) {
  'use strict';

  var MIN_DELAY = 1000, MAX_DELAY = 30000;

  function withLastEventId(url, id) {
    var at = url.indexOf('?');
    var params = new URLSearchParams(at < 0 ? '' : url.slice(at + 1));
    params.set('lastEventId', id);
    return (at < 0 ? url : url.slice(0, at)) + '?' + params.toString();
  }

  function ReconnectingEventSource(url) {
    this.url = url;
    this.readyState = 0;
    this.lastEventId = '';
    this._listeners = {};
    this._source = null;
    this._delay = MIN_DELAY;
    this._timer = null;
    this._closed = false;
    this._open();
  }

  ReconnectingEventSource.CONNECTING = 0;
  ReconnectingEventSource.OPEN = 1;
  ReconnectingEventSource.CLOSED = 2;

  ReconnectingEventSource.prototype._emit = function (type, event) {
    if (event && event.lastEventId) this.lastEventId = event.lastEventId;
    var list = (this._listeners[type] || []).slice();
    for (var i = 0; i < list.length; i++) list[i].call(this, event);
  };

  ReconnectingEventSource.prototype._listen = function (type) {
    var self = this;
    var source = self._source;
    source.addEventListener(type, function (event) {
      if (source === self._source) self._emit(type, event);
    });
  };

  ReconnectingEventSource.prototype._open = function () {
    var self = this;
    var url = self.lastEventId ? withLastEventId(self.url, self.lastEventId) : self.url;
    var source = new global.EventSource(url);
    self._source = source;
    source.addEventListener('open', function (event) {
      if (source !== self._source) return;
      self.readyState = 1;
      self._delay = MIN_DELAY;
      self._emit('open', event);
    });
    // The wrapped EventSource's error event is passed on: its target's readyState tells whether the browser
    // reconnects by itself (CONNECTING) or gave up (CLOSED, and this wrapper opens a new one).
    source.addEventListener('error', function (event) {
      if (source !== self._source) return;
      if (source.readyState === 2) {
        // The browser gave up: try again later with a new EventSource.
        self._source = null;
        source.close();
        self._timer = setTimeout(function () { if (!self._closed) self._open(); }, self._delay);
        self._delay = Math.min(self._delay * 2, MAX_DELAY);
      }
      self.readyState = 0;
      self._emit('error', event);
    });
    // Message events carry the ids to resume from, whether or not anyone listens to them.
    if (!self._listeners.message) self._listeners.message = [];
    for (var type in self._listeners) {
      if (type !== 'open' && type !== 'error') self._listen(type);
    }
  };

  ReconnectingEventSource.prototype.addEventListener = function (type, listener) {
    var list = this._listeners[type];
    if (!list) {
      list = this._listeners[type] = [];
      if (this._source && type !== 'open' && type !== 'error') this._listen(type);
    }
    if (list.indexOf(listener) < 0) list.push(listener);
  };

  ReconnectingEventSource.prototype.removeEventListener = function (type, listener) {
    var list = this._listeners[type];
    if (list && list.indexOf(listener) >= 0) list.splice(list.indexOf(listener), 1);
  };

  ReconnectingEventSource.prototype.close = function () {
    this._closed = true;
    this.readyState = 2;
    clearTimeout(this._timer);
    if (this._source) this._source.close();
    this._source = null;
  };

  global.ReconnectingEventSource = ReconnectingEventSource;
})(this);

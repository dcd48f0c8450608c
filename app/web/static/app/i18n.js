/* The app's message catalogues (Korean first, English) and formatting in the chosen locale.
   Every text on screen comes from here: a missing key is recorded in AnsimI18n.missing and
   logged as an error (the browser test fails on either). */
'use strict';

const AnsimI18n = (() => {
  const MESSAGES = {
    ko: {
      skip: '본문으로 건너뛰기',
      title: '안심',
      language: '언어',
      call112: '112에 전화하기',
      'signin.title': '시작하기',
      'signin.help': '구청 또는 문자로 받은 회원 코드를 입력하세요. 이 휴대폰에만 저장됩니다.',
      'signin.token': '회원 코드',
      'signin.submit': '로그인',
      'signin.invalid': '코드가 올바르지 않습니다.',
      'signin.offline': '연결할 수 없습니다. 잠시 후 다시 시도하세요.',
      'home.title': '긴급 신고',
      'sos.label': '긴급 신고 버튼. 경찰 관제센터에 위치를 보냅니다.',
      'sos.holdHint': '1초간 누르세요',
      'sos.tapHint': '누르면 신고',
      'shake.on': '흔들기 신고 켜짐 ({count}회)',
      'shake.off': '흔들기 신고 꺼짐',
      'countdown.title': '신고까지',
      'countdown.cancel': '취소 (PIN 필요 없음)',
      'alert.title': '긴급 신고',
      'alert.sending': '전송 중… 연결되면 자동으로 보냅니다',
      'alert.received': '관제센터 접수 {time}',
      'alert.policeAck': '경찰이 확인했습니다',
      'alert.policeWaiting': '경찰 확인을 기다리는 중',
      'alert.accuracy': '위치 정확도 ±{m}',
      'alert.coming': '출동 중',
      'alert.nobody': '아직 배정된 사람이 없습니다',
      'alert.responder': '{name} · 배지 {badge} (신분증을 확인하세요)',
      'alert.places': '지금 열린 안전한 장소',
      'alert.noPlaces': '가까운 곳을 찾는 중',
      'alert.place': '{name} · {distance} {direction}',
      'alert.map': '내 위치와 안전한 장소 지도',
      'alert.pin': '취소하려면 PIN 입력',
      'alert.cancel': '신고 취소',
      'alert.wrongPin': 'PIN이 틀렸습니다.',
      'alert.locked': 'PIN 오류가 많아 {time}까지 취소할 수 없습니다.',
      'alert.cancelOffline': '연결할 수 없습니다. 다시 시도하세요.',
      'cancelled.title': '신고가 취소되었습니다',
      'cancelled.at': '취소 시각 {time}',
      'cancelled.done': '확인',
      'settings.title': '설정',
      'settings.sos': '신고 방법',
      'settings.hold': '1초 길게 눌러 신고 (끄면 한 번 누르기)',
      'settings.silent': '무음 신고 (소리·진동 없음, 화면 어둡게)',
      'settings.countdown': '취소 대기 시간 (초)',
      'settings.shake': '휴대폰을 흔들어 신고',
      'settings.shakeThreshold': '흔들기 세기 (m/s²)',
      'settings.shakeCount': '흔들기 횟수',
      'settings.shakePermission': '동작 감지 허용',
      'settings.guardians': '보호자 (최대 5명)',
      'settings.guardianName': '이름',
      'settings.guardianPhone': '전화번호',
      'settings.guardianAdd': '보호자 추가',
      'settings.guardianRemove': '{name} 삭제',
      'settings.guardianFull': '보호자는 5명까지입니다.',
      'settings.data': '내 정보',
      'settings.export': '내 정보 내려받기',
      'settings.erasePin': '삭제하려면 PIN',
      'settings.erase': '계정과 정보 삭제',
      'settings.erased': '삭제되었습니다.',
      'settings.eraseOpen': '신고가 진행 중일 때는 삭제할 수 없습니다.',
      'settings.signout': '로그아웃',
      'settings.failed': '실패했습니다 ({detail}).',
      'nav': '메뉴',
      'nav.home': '신고',
      'nav.walk': '귀갓길 동행 (준비 중)',
      'nav.settings': '설정',
      'dir.N': '북쪽', 'dir.NE': '북동쪽', 'dir.E': '동쪽', 'dir.SE': '남동쪽',
      'dir.S': '남쪽', 'dir.SW': '남서쪽', 'dir.W': '서쪽', 'dir.NW': '북서쪽',
    },
    en: {
      skip: 'Skip to content',
      title: 'Ansim',
      language: 'Language',
      call112: 'Call 112',
      'signin.title': 'Get started',
      'signin.help': 'Enter the member code from your district office or text message. It is kept on this phone only.',
      'signin.token': 'Member code',
      'signin.submit': 'Sign in',
      'signin.invalid': 'That code is not valid.',
      'signin.offline': 'Cannot connect. Try again in a moment.',
      'home.title': 'Emergency',
      'sos.label': 'SOS button. Sends your position to the police control centre.',
      'sos.holdHint': 'Hold for 1 second',
      'sos.tapHint': 'Tap to send',
      'shake.on': 'Shake to send is on ({count} shakes)',
      'shake.off': 'Shake to send is off',
      'countdown.title': 'Sending SOS in',
      'countdown.cancel': 'Cancel (no PIN needed)',
      'alert.title': 'Your SOS',
      'alert.sending': 'Sending… it goes out as soon as there is a connection',
      'alert.received': 'Received by the control centre at {time}',
      'alert.policeAck': 'Police have acknowledged',
      'alert.policeWaiting': 'Waiting for the police to acknowledge',
      'alert.accuracy': 'Position accurate to ±{m}',
      'alert.coming': 'Who is coming',
      'alert.nobody': 'Nobody assigned yet',
      'alert.responder': '{name} · badge {badge} (ask to see the ID)',
      'alert.places': 'Safe places open now',
      'alert.noPlaces': 'Looking for places near you',
      'alert.place': '{name} · {distance} {direction}',
      'alert.map': 'Map of your position and safe places',
      'alert.pin': 'PIN to cancel',
      'alert.cancel': 'Cancel the SOS',
      'alert.wrongPin': 'Wrong PIN.',
      'alert.locked': 'Too many wrong PINs: cancelling is locked until {time}.',
      'alert.cancelOffline': 'Cannot connect. Try again.',
      'cancelled.title': 'The SOS is cancelled',
      'cancelled.at': 'Cancelled at {time}',
      'cancelled.done': 'Done',
      'settings.title': 'Settings',
      'settings.sos': 'How to send an SOS',
      'settings.hold': 'Hold 1 second to send (off: a single tap)',
      'settings.silent': 'Silent SOS (no sound or vibration, dimmed screen)',
      'settings.countdown': 'Time to cancel (seconds)',
      'settings.shake': 'Shake the phone to send',
      'settings.shakeThreshold': 'Shake strength (m/s²)',
      'settings.shakeCount': 'Number of shakes',
      'settings.shakePermission': 'Allow motion sensing',
      'settings.guardians': 'Guardians (up to 5)',
      'settings.guardianName': 'Name',
      'settings.guardianPhone': 'Phone',
      'settings.guardianAdd': 'Add a guardian',
      'settings.guardianRemove': 'Remove {name}',
      'settings.guardianFull': 'You can have up to 5 guardians.',
      'settings.data': 'Your data',
      'settings.export': 'Download your data',
      'settings.erasePin': 'PIN to erase',
      'settings.erase': 'Erase your account and data',
      'settings.erased': 'Erased.',
      'settings.eraseOpen': 'Not while an alert is open.',
      'settings.signout': 'Sign out',
      'settings.failed': 'That failed ({detail}).',
      'nav': 'Menu',
      'nav.home': 'SOS',
      'nav.walk': 'Walk me home (coming)',
      'nav.settings': 'Settings',
      'dir.N': 'north', 'dir.NE': 'north-east', 'dir.E': 'east', 'dir.SE': 'south-east',
      'dir.S': 'south', 'dir.SW': 'south-west', 'dir.W': 'west', 'dir.NW': 'north-west',
    },
  };
  const LANGS = Object.keys(MESSAGES);
  const missing = [];
  let lang = 'ko';

  function pick(saved) {
    if (saved && MESSAGES[saved]) return saved;
    for (const l of navigator.languages || [navigator.language || 'ko']) {
      const base = String(l).toLowerCase().split('-')[0];
      if (MESSAGES[base]) return base;
    }
    return 'ko'; // Korean first
  }

  function t(key, params = {}) {
    let text = MESSAGES[lang][key];
    if (text === undefined) {
      missing.push(`${lang}:${key}`);
      console.error(`missing message ${lang}:${key}`);
      text = key;
    }
    return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
  }

  /** Fill every [data-i18n] (text) and [data-i18n-aria] (aria-label) under root. */
  function apply(root = document) {
    document.documentElement.lang = lang;
    for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
    for (const node of root.querySelectorAll('[data-i18n-aria]')) node.setAttribute('aria-label', t(node.dataset.i18nAria));
  }

  function time(iso) {
    return new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit', hour12: false }).format(new Date(iso));
  }

  function distance(m) {
    const km = m >= 1000;
    return new Intl.NumberFormat(lang, {
      style: 'unit', unit: km ? 'kilometer' : 'meter', maximumFractionDigits: km ? 1 : 0,
    }).format(km ? m / 1000 : Math.round(m));
  }

  return {
    MESSAGES, LANGS, missing, t, apply, time, distance, pick,
    get lang() { return lang; },
    set lang(value) { lang = MESSAGES[value] ? value : 'ko'; },
  };
})();
